"""The security baseline: deploy checks, CSP, login throttling, cookies, and gunicorn + WhiteNoise."""

import datetime
import http.client
import io
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.conf import settings as django_settings
from django.core.management import call_command
from django.test import RequestFactory
from django.utils import timezone

from memoryadmin.security import client_ip

from .processes import serve_app

BASE_DIR = Path(__file__).resolve().parent.parent
PASSWORD = "correct horse battery staple"
HOST = "memoryadmin.example.com"

EXPECTED_CSP = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    "img-src": ["'self'", "data:"],
    "connect-src": ["'self'"],
    "frame-ancestors": ["'none'"],
    "form-action": ["'self'"],
    "base-uri": ["'none'"],
    "object-src": ["'none'"],
}


def production_env(**extra):
    """The environment of a production deployment behind a TLS proxy, nothing from the test run."""
    env = {
        key: value for key, value in os.environ.items() if not key.startswith(("MEMORYADMIN_", "SECURE_", "DJANGO_"))
    }
    env.update(
        DEBUG="0",
        SECRET_KEY=secrets.token_urlsafe(50),
        MEMORYADMIN_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
        ALLOWED_HOSTS=HOST,
        CSRF_TRUSTED_ORIGINS=f"https://{HOST}",
        SECURE_HSTS_SECONDS="31536000",
        SECURE_HSTS_INCLUDE_SUBDOMAINS="1",
        SECURE_HSTS_PRELOAD="1",
        SECURE_SSL_REDIRECT="1",
        SECURE_PROXY_SSL_HEADER="HTTP_X_FORWARDED_PROTO,https",
        MEMORYADMIN_PROXY_COUNT="1",
        DJANGO_SETTINGS_MODULE="memoryadmin.settings",
    )
    env.update(extra)
    return env


def manage(*args, env, timeout=60):
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=timeout
    )


def parse_csp(header):
    policy = {}
    for directive in header.split(";"):
        name, *values = directive.split()
        policy[name] = values
    return policy


# --- deploy checks -----------------------------------------------------------


def test_deploy_check_is_clean_in_production(tmp_path):
    env = production_env(DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}")
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues (0 silenced)" in result.stdout


def test_settings_from_the_environment():
    """Dev (DEBUG) cookies are not Secure; the proxy header parses into Django's pair; a
    PostgreSQL DATABASE_URL selects Django's backend on psycopg 3 (no server is contacted)."""
    script = (
        "import django; django.setup(); from django.conf import settings as s; "
        "from django.db.backends.postgresql import base; "
        "print(s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_PROXY_SSL_HEADER, s.SECURE_HSTS_SECONDS, "
        "s.STORAGES['staticfiles']['BACKEND'], s.DATABASES['default']['ENGINE'], "
        "s.DATABASES['default']['CONN_MAX_AGE'], base.is_psycopg3)"
    )
    env = production_env(
        DEBUG="1", DATABASE_URL="postgres://memoryadmin:pw@db.invalid:5432/memoryadmin?conn_max_age=60"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=BASE_DIR, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == (
        "False False ('HTTP_X_FORWARDED_PROTO', 'https') 31536000 "
        "whitenoise.storage.CompressedManifestStaticFilesStorage django.db.backends.postgresql 60 True"
    )


def test_database_connections_are_kept_between_requests_unless_the_url_says_otherwise():
    """Opening a connection per request cost a signed-in page more CPU than its queries (issue 17)."""
    script = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.DATABASES['default']['CONN_MAX_AGE'], s.DATABASES['default']['CONN_HEALTH_CHECKS'])"
    )
    env = production_env(DATABASE_URL="sqlite:////tmp/memoryadmin-unused.sqlite3")
    result = subprocess.run([sys.executable, "-c", script], cwd=BASE_DIR, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "600 True"


# --- Content Security Policy --------------------------------------------------


@pytest.mark.django_db
def test_csp_header_on_a_page(admin_web):
    response = admin_web.get("/")
    assert response.status_code == 200
    header = response["Content-Security-Policy"]
    assert parse_csp(header) == EXPECTED_CSP
    assert "unsafe-inline" not in header and "unsafe-eval" not in header


@pytest.mark.django_db
def test_csp_header_on_the_login_page(client):
    response = client.get("/login/")
    assert parse_csp(response["Content-Security-Policy"]) == EXPECTED_CSP


def test_templates_have_nothing_inline():
    """Everything a CSP without 'unsafe-inline' would block: inline scripts, styles and handlers."""
    offenders = []
    patterns = {
        "inline <script>": re.compile(r"<script\b(?![^>]*\bsrc=)[^>]*>", re.I),
        "<style>": re.compile(r"<style\b", re.I),
        "style= attribute": re.compile(r"\sstyle\s*=", re.I),
        "on...= handler": re.compile(r"\son[a-z]+\s*=", re.I),
        "hx-on (needs eval)": re.compile(r"\shx-on", re.I),
        "javascript: URL": re.compile(r"javascript:", re.I),
    }
    for path in sorted((BASE_DIR / "templates").rglob("*.html")):
        text = path.read_text()
        offenders += [
            f"{path.relative_to(BASE_DIR)}: {what}" for what, pattern in patterns.items() if pattern.search(text)
        ]
    assert offenders == []


def test_htmx_is_configured_for_the_csp():
    base = (BASE_DIR / "templates" / "base.html").read_text()
    assert '"includeIndicatorStyles": false' in base
    assert '"allowEval": false' in base


# --- login throttling ----------------------------------------------------------


def login(client, username, password, **extra):
    return client.post("/login/", {"username": username, "password": password}, **extra)


def retry_at(response):
    match = re.search(r'<time datetime="([^"]+)"', response.content.decode())
    return datetime.datetime.fromisoformat(match.group(1))


@pytest.fixture
def users(django_user_model):
    return [django_user_model.objects.create_user(name, password=PASSWORD) for name in ("olga", "piotr")]


@pytest.mark.django_db
def test_lockout_after_five_failures_refuses_even_the_right_password(client, users):
    for attempt in range(1, 5):
        response = login(client, "olga", f"wrong {attempt}")
        assert response.status_code == 200  # the form again, with its error
        assert "Too many login attempts" not in response.content.decode()
    response = login(client, "olga", "wrong 5")
    assert response.status_code == 429

    response = login(client, "olga", PASSWORD)
    assert response.status_code == 429
    html = response.content.decode()
    assert "Too many login attempts" in html and "Try again after" in html
    # The lock ends 15 minutes after the last failure; the page shows that, rounded up to the minute.
    ends = timezone.now() + datetime.timedelta(minutes=15)
    assert ends - datetime.timedelta(seconds=30) < retry_at(response) <= ends + datetime.timedelta(seconds=60)
    assert re.search(r"\(in 15\s+minutes\)", html)  # timeuntil puts a no-break space
    assert "_auth_user_id" not in client.session
    assert client.get("/").status_code == 302  # still sent to the login page

    # Per username and address: another operator at the same address is not locked...
    assert login(client, "piotr", PASSWORD).status_code == 302
    # ...nor is the same username from another address.
    other = client.__class__()
    assert login(other, "olga", PASSWORD, REMOTE_ADDR="198.51.100.7").status_code == 302


@pytest.mark.django_db
def test_lockout_ends_after_the_cool_off(client, users):
    from axes.models import AccessAttempt

    for _ in range(5):
        login(client, "olga", "wrong")
    assert login(client, "olga", PASSWORD).status_code == 429
    AccessAttempt.objects.update(attempt_time=timezone.now() - datetime.timedelta(minutes=16))
    assert login(client, "olga", PASSWORD).status_code == 302


@pytest.mark.django_db
def test_a_success_resets_the_count(client, users):
    for _ in range(4):
        login(client, "olga", "wrong")
    assert login(client, "olga", PASSWORD).status_code == 302
    client.logout()
    for _ in range(4):
        assert login(client, "olga", "wrong").status_code == 200
    assert login(client, "olga", PASSWORD).status_code == 302


@pytest.mark.django_db
def test_forged_forwarded_for_does_not_escape_the_lockout(client, users, settings):
    """Behind one proxy, the entries a client writes itself are not its address."""
    settings.MEMORYADMIN_PROXY_COUNT = 1
    for attempt in range(5):
        # The proxy (REMOTE_ADDR 10.0.0.1) appends the real client, 203.0.113.5.
        login(client, "olga", "wrong", HTTP_X_FORWARDED_FOR=f"192.0.2.{attempt}, 203.0.113.5", REMOTE_ADDR="10.0.0.1")
    response = login(client, "olga", PASSWORD, HTTP_X_FORWARDED_FOR="192.0.2.99, 203.0.113.5", REMOTE_ADDR="10.0.0.1")
    assert response.status_code == 429
    # Another client behind the same proxy is not locked.
    response = login(client, "olga", PASSWORD, HTTP_X_FORWARDED_FOR="203.0.113.6", REMOTE_ADDR="10.0.0.1")
    assert response.status_code == 302


def lock_out(client, username):
    for _ in range(5):
        login(client, username, "wrong")
    assert login(client, username, PASSWORD).status_code == 429


@pytest.mark.django_db
def test_a_lockout_is_lifted_with_axes_reset_username(client, users):
    """The README's way for whoever runs the deployment."""
    lock_out(client, "olga")
    call_command("axes_reset_username", "olga", stdout=io.StringIO())
    assert login(client, "olga", PASSWORD).status_code == 302


@pytest.mark.django_db
def test_a_superuser_lifts_a_lockout_in_the_django_admin(client, users, django_user_model):
    from axes.models import AccessAttempt

    lock_out(client, "olga")
    (attempt,) = AccessAttempt.objects.filter(username="olga")
    root = client.__class__()
    root.force_login(django_user_model.objects.create_superuser("root", password=PASSWORD))
    assert "olga" in root.get("/django-admin/axes/accessattempt/").content.decode()
    root.post(f"/django-admin/axes/accessattempt/{attempt.pk}/delete/", {"post": "yes"})
    assert login(client, "olga", PASSWORD).status_code == 302


@pytest.mark.django_db
def test_the_admin_role_cannot_see_or_lift_lockouts(client, users, django_user_model, monkeypatch):
    """As the README says: lockouts are a superuser's (or the server's) business, not the Admin role's."""
    from axes.models import AccessAttempt

    lock_out(client, "olga")
    monkeypatch.setenv("ADMIN_PASSWORD", PASSWORD)
    call_command("create_operator", "ada", role="admin", password_from_env="ADMIN_PASSWORD", stdout=io.StringIO())
    admin = client.__class__()
    admin.force_login(django_user_model.objects.get(username="ada"))
    assert admin.get("/django-admin/").status_code == 200  # staff: the read-only Django admin
    assert admin.get("/django-admin/axes/accessattempt/").status_code == 403
    (attempt,) = AccessAttempt.objects.filter(username="olga")
    assert admin.post(f"/django-admin/axes/accessattempt/{attempt.pk}/delete/", {"post": "yes"}).status_code == 403
    assert login(client, "olga", PASSWORD).status_code == 429


@pytest.mark.parametrize(
    ("count", "forwarded", "expected"),
    [
        (0, "203.0.113.5", "10.0.0.1"),  # no proxy configured: the header is ignored
        (1, "", "10.0.0.1"),  # nothing forwarded: the peer
        (1, "203.0.113.5", "203.0.113.5"),
        (1, "192.0.2.1, 203.0.113.5", "203.0.113.5"),  # the left entry is the client's own claim
        (2, "192.0.2.1, 203.0.113.5, 10.0.0.9", "203.0.113.5"),
        (2, "203.0.113.5", "10.0.0.1"),  # fewer hops than proxies
    ],
)
def test_client_ip(settings, count, forwarded, expected):
    settings.MEMORYADMIN_PROXY_COUNT = count
    extra = {"HTTP_X_FORWARDED_FOR": forwarded} if forwarded else {}
    request = RequestFactory().get("/", REMOTE_ADDR="10.0.0.1", **extra)
    assert client_ip(request) == expected


def test_axes_is_wired_as_documented():
    assert django_settings.AUTHENTICATION_BACKENDS[0] == "axes.backends.AxesStandaloneBackend"
    assert "axes.middleware.AxesMiddleware" in django_settings.MIDDLEWARE
    assert django_settings.AXES_LOCKOUT_PARAMETERS == [["username", "ip_address"]]


# --- cookies --------------------------------------------------------------------


def test_secure_settings_when_debug_is_off():
    assert django_settings.DEBUG is False
    assert django_settings.SESSION_COOKIE_SECURE is True
    assert django_settings.CSRF_COOKIE_SECURE is True
    assert django_settings.SESSION_COOKIE_HTTPONLY is True
    assert django_settings.CSRF_COOKIE_HTTPONLY is True
    assert django_settings.SECURE_CONTENT_TYPE_NOSNIFF is True
    assert django_settings.SECURE_REFERRER_POLICY == "same-origin"
    assert django_settings.X_FRAME_OPTIONS == "DENY"


@pytest.mark.django_db
def test_cookies_are_secure_and_http_only(client, users):
    csrf = client.get("/login/").cookies["csrftoken"]
    assert csrf["secure"] and csrf["httponly"]
    response = login(client, "olga", PASSWORD)
    assert response.status_code == 302
    session = response.cookies["sessionid"]
    assert session["secure"] and session["httponly"]
    assert session["samesite"] == "Lax"


# --- gunicorn + WhiteNoise ------------------------------------------------------


def get(port, path, **headers):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path, headers={"Host": HOST, **headers})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


@pytest.fixture
def gunicorn(tmp_path):
    """gunicorn serving the app as in production, static files collected (hashed, compressed)."""
    env = production_env(
        STATIC_ROOT=str(tmp_path / "static"),
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        MEMORYADMIN_STATIC_MANIFEST="1",
    )
    collected = manage("collectstatic", "--noinput", "-v0", env=env)
    assert collected.returncode == 0, collected.stderr
    with serve_app({**env, "WEB_CONCURRENCY": "1"}, tmp_path / "gunicorn.log") as port:
        yield port


def test_gunicorn_serves_the_app_and_whitenoise_the_hashed_css(gunicorn):
    # Plain http is redirected to https; the proxy's X-Forwarded-Proto says it was https.
    status, headers, _ = get(gunicorn, "/login/")
    assert status == 301 and headers["Location"] == f"https://{HOST}/login/"

    status, headers, body = get(gunicorn, "/login/", **{"X-Forwarded-Proto": "https"})
    assert status == 200, body
    assert headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"
    assert parse_csp(headers["Content-Security-Policy"]) == EXPECTED_CSP
    css = re.search(r'<link rel="stylesheet" href="(/static/css/app\.[0-9a-f]{12}\.css)">', body.decode()).group(1)

    status, headers, body = get(gunicorn, css, **{"X-Forwarded-Proto": "https", "Accept-Encoding": "gzip"})
    assert status == 200
    assert headers["Content-Type"].startswith("text/css")
    assert headers["Content-Encoding"] == "gzip"
    assert "immutable" in headers["Cache-Control"]  # hashed name: cached forever
