"""Caching headers for every response the app makes (static files are answered before this, by WhiteNoise).

What a signed-in user receives holds conversations, keys or audit data: transcripts, raw messages,
exports, the audit log, job reports. None of it may be kept by a browser or a proxy cache, so every
response to a signed-in user, streamed downloads included, is `Cache-Control: no-store` (with
Django's other never-cache directives, for older caches).

One URL can answer a full page or an htmx fragment of it (a job's page and its polled status, "scan
more", "earlier messages", and the error alert of any URL), so every response also varies on
HX-Request: a cache must never hand a fragment to a page load, or the page to htmx.
"""

from django.utils.cache import add_never_cache_headers, patch_vary_headers


class CacheHeadersMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        patch_vary_headers(response, ["HX-Request"])
        # request.user is read after the view: a login or logout in this request counts.
        if request.user.is_authenticated:
            add_never_cache_headers(response)
        return response
