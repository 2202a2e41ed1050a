from django.urls import path

from . import views

urlpatterns = [
    path("", views.connection_list, name="connection_list"),
    path("new/", views.connection_create, name="connection_create"),
    path("<int:pk>/", views.connection_edit, name="connection_edit"),
    path("<int:pk>/delete/", views.connection_delete, name="connection_delete"),
    path("test/", views.connection_test, name="connection_test"),
    path("switch/", views.connection_switch, name="connection_switch"),
]
