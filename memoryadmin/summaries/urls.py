from django.urls import path

from . import views

urlpatterns = [
    path("sessions/<session_key:key>/", views.session_summarize, name="session_summarize"),
    path("jobs/<int:pk>/", views.summary_job, name="summary_job"),
    path("batches/", views.batch_create, name="summary_batch_create"),
    path("batches/<int:pk>/", views.batch_detail, name="summary_batch"),
    path("settings/", views.summarizer_settings, name="summarizer_settings"),
]
