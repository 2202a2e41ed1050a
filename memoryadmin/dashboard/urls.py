from django.urls import path

from . import views

urlpatterns = [
    path("", views.session_list, name="session_list"),
    path("favicon.ico", views.favicon),
    path("sessions/<session_key:key>/", views.session_detail, name="session_detail"),
    path("sessions/<session_key:key>/ttl/", views.session_set_ttl, name="session_set_ttl"),
    path("sessions/<session_key:key>/persist/", views.session_persist, name="session_persist"),
    path("sessions/<session_key:key>/clear/", views.session_clear, name="session_clear"),
    path("sessions/<session_key:key>/export.<slug:fmt>", views.session_export, name="session_export"),
    path("sessions/<session_key:key>/messages/<int:index>/raw/", views.message_raw, name="message_raw"),
    path("sessions/<session_key:key>/messages/<int:index>/redact/", views.message_redact, name="message_redact"),
]
