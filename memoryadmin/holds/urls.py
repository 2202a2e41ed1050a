from django.urls import path

from . import views

urlpatterns = [
    path("", views.hold_list, name="hold_list"),
    path("new/", views.hold_create, name="hold_create"),
    path("<int:pk>/lift/", views.hold_lift, name="hold_lift"),
]
