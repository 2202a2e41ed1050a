from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("connections/", include("memoryadmin.connections.urls")),
    path("audit/", include("memoryadmin.audit.urls")),
    path("django-admin/", admin.site.urls),
    path("", include("memoryadmin.dashboard.urls")),
]

handler404 = "memoryadmin.dashboard.views.not_found"
