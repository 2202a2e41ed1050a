from django.urls import path

from . import views

urlpatterns = [
    path("", views.overview_page, name="overview"),
    path("measure/", views.measure, name="overview_measure"),
    path("runs/<int:pk>/", views.run_detail, name="overview_run"),
    path("runs/<int:pk>/cancel/", views.run_cancel, name="overview_cancel"),
]
