from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, register_converter

from memoryadmin.dashboard.converters import SessionKeyConverter

# Session keys travel in URLs as opaque tokens (see converters.py), in every app.
register_converter(SessionKeyConverter, "session_key")

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("connections/", include("memoryadmin.connections.urls")),
    path("audit/", include("memoryadmin.audit.urls")),
    path("summaries/", include("memoryadmin.summaries.urls")),
    path("bulk/", include("memoryadmin.bulk.urls")),
    path("holds/", include("memoryadmin.holds.urls")),
    path("overview/", include("memoryadmin.overview.urls")),
    path("retention/", include("memoryadmin.retention.urls")),
    path("django-admin/", admin.site.urls),
    path("", include("memoryadmin.dashboard.urls")),
]

handler404 = "memoryadmin.dashboard.views.not_found"
handler500 = "memoryadmin.dashboard.views.server_error"
