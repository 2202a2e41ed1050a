"""Pages that do nothing, behind the app's whole middleware (`python -m bench.profile floor`).

They measure what every request pays before a view does any work: the WSGI handler and the
middleware, a signed-in user's session and user lookups, a permission check, and base.html.
"""

from django.contrib.auth.decorators import login_not_required
from django.http import HttpResponse
from django.shortcuts import render
from django.urls import include, path


@login_not_required
def anonymous(request):
    return HttpResponse("ok")


def signed_in(request):
    return HttpResponse("ok")


def permission(request):
    request.user.has_perm("accounts.view_session")
    return HttpResponse("ok")


def base_template(request):
    request.user.has_perm("accounts.view_session")
    return render(request, "base.html", {})


urlpatterns = [
    path("floor/anonymous/", anonymous),
    path("floor/signed-in/", signed_in),
    path("floor/permission/", permission),
    path("floor/base/", base_template),
    path("", include("memoryadmin.urls")),
]
