from django.urls import path

from . import views

urlpatterns = [
    path("", views.policy_list, name="retention_list"),
    path("new/", views.policy_create, name="retention_create"),
    path("<int:pk>/", views.policy_detail, name="retention_policy"),
    path("<int:pk>/edit/", views.policy_edit, name="retention_edit"),
    path("<int:pk>/preview/", views.policy_preview, name="retention_preview"),
    path("<int:pk>/enable/", views.policy_enable, name="retention_enable"),
    path("<int:pk>/disable/", views.policy_disable, name="retention_disable"),
]
