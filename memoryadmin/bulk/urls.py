from django.urls import path

from . import views

urlpatterns = [
    path("", views.job_list, name="bulk_list"),
    path("new/", views.job_create, name="bulk_create"),
    path("<int:pk>/", views.job_detail, name="bulk_job"),
    path("<int:pk>/confirm/", views.job_confirm, name="bulk_confirm"),
    path("<int:pk>/discard/", views.job_discard, name="bulk_discard"),
    path("<int:pk>/cancel/", views.job_cancel, name="bulk_cancel"),
    path("<int:pk>/resume/", views.job_resume, name="bulk_resume"),
    path("<int:pk>/report.csv", views.job_report, name="bulk_report"),
    path("<int:pk>/verify/", views.job_verify, name="bulk_verify"),
    path("<int:pk>/certificate/", views.job_certificate, name="bulk_certificate"),
    path("<int:pk>/certificate.json", views.job_certificate, {"fmt": "json"}, name="bulk_certificate_json"),
    path("search/", views.search_new, name="search_new"),
    path("search/<int:pk>/", views.search_detail, name="search_job"),
    path("search/<int:pk>/cancel/", views.search_cancel, name="search_cancel"),
    path("search/<int:pk>/purge/", views.search_to_bulk, name="search_to_bulk"),
]
