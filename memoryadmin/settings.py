"""Settings for Memory Admin. Everything comes from the environment (or `.env`).

`.env.example` documents every variable. DEBUG is off unless set; the dev
defaults that `make run` needs are exported by `make run`, not baked in here.
"""

import os
import tempfile
from datetime import timedelta
from pathlib import Path

import csp.constants
import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env")

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_htmx",
    "template_partials",
    "axes",
    "csp",
    "memoryadmin.dashboard",
    "memoryadmin.connections",
    "memoryadmin.accounts",
    "memoryadmin.audit",
    "memoryadmin.summaries",
    "memoryadmin.bulk",
    "memoryadmin.holds",
    "memoryadmin.overview",
    "memoryadmin.retention",
    "django_tasks",
    "django_tasks_db",
    "memoryadmin.localstore",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Static files are answered here, before sessions and auth are touched.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "csp.middleware.CSPMiddleware",
    "memoryadmin.audit.middleware.RequestIdMiddleware",
    # Around everything that may reach a store: the request's commands, in its headers and page footer.
    "memoryadmin.bill.StoreBillMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # After authentication (it asks who the user is), and outside every view and error page below.
    "memoryadmin.cache_headers.CacheHeadersMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "memoryadmin.dashboard.middleware.StoreErrorMiddleware",
    # Last, as axes requires: turns a refused login into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "memoryadmin.urls"
WSGI_APPLICATION = "memoryadmin.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "memoryadmin.connections.context_processors.connections",
                "memoryadmin.bill.store_bill",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
# Unless DATABASE_URL says otherwise (`?conn_max_age=`), each thread keeps its database connection between
# requests, checked before it is reused: opening one per request, and on SQLite closing it (the last
# connection to close checkpoints the WAL), cost a signed-in page more CPU than its queries.
DATABASES["default"].setdefault("CONN_MAX_AGE", 600)
DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
# The test suite's database (pytest.ini sets it): a SQLite file (below), or "postgres": a throwaway
# server the suite starts (tests/postgres.py), listening on a socket in this directory only.
if env.str("MEMORYADMIN_TEST_DATABASE", default="") == "postgres":
    DATABASES["default"] = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "memoryadmin",
        "USER": "memoryadmin",
        "HOST": str(Path(tempfile.gettempdir()) / f"memoryadmin-test-postgres-{os.getpid()}"),
    }
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web server and the job worker write at the same time: WAL lets
    # readers go on during a write, IMMEDIATE takes the write lock up front
    # (no upgrade deadlocks), and a writer waits instead of failing at once.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        **DATABASES["default"].get("OPTIONS", {}),
    }
    # Tests that run a real worker process need the test database in a file it can open;
    # "{pid}" keeps two test runs on one machine apart.
    if env.str("MEMORYADMIN_TEST_DATABASE", default=""):
        TEST_DATABASE = BASE_DIR / env.str("MEMORYADMIN_TEST_DATABASE").format(pid=os.getpid())
        TEST_DATABASE.parent.mkdir(parents=True, exist_ok=True)
        DATABASES["default"]["TEST"] = {"NAME": str(TEST_DATABASE)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "session_list"
LOGOUT_REDIRECT_URL = "login"

# Login throttling (django-axes): after MEMORYADMIN_LOGIN_FAILURE_LIMIT failed
# logins for one username from one address, that pair is refused for the
# cool-off; other usernames and other addresses can still log in, so nobody
# can lock an operator out from elsewhere.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: refuses a locked pair before any password check
    "django.contrib.auth.backends.ModelBackend",
]
MEMORYADMIN_LOGIN_FAILURE_LIMIT = env.int("MEMORYADMIN_LOGIN_FAILURE_LIMIT", default=5)
MEMORYADMIN_LOGIN_COOLOFF_MINUTES = env.int("MEMORYADMIN_LOGIN_COOLOFF_MINUTES", default=15)
# Reverse proxies in front of the app that append to X-Forwarded-For (0: none,
# the header is ignored); the client address is the entry that many from the right.
MEMORYADMIN_PROXY_COUNT = env.int("MEMORYADMIN_PROXY_COUNT", default=0)
# Take the request id of audit events and log lines from X-Request-ID: only if the proxy in
# front sets or replaces that header on every request (else clients choose it). Off: generated.
MEMORYADMIN_TRUST_REQUEST_ID = env.bool("MEMORYADMIN_TRUST_REQUEST_ID", default=False)
AXES_FAILURE_LIMIT = MEMORYADMIN_LOGIN_FAILURE_LIMIT
AXES_COOLOFF_TIME = timedelta(minutes=MEMORYADMIN_LOGIN_COOLOFF_MINUTES)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# Successful logins are not kept: that table would only grow, and failures are what throttling needs.
AXES_DISABLE_ACCESS_LOG = True
# Attempts during a lockout do not extend it, so the lockout page can say when it ends.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_LOCKOUT_CALLABLE = "memoryadmin.security.lockout_response"
# Our own resolver rather than django-ipware: it trusts exactly MEMORYADMIN_PROXY_COUNT hops.
AXES_CLIENT_IP_CALLABLE = "memoryadmin.security.client_ip"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = env.path("STATIC_ROOT", default=BASE_DIR / "var" / "static")
# WhiteNoise serves STATIC_ROOT. With the manifest (production), `collectstatic`
# writes hashed, compressed copies that are cached forever; pages then fail
# without it, so the tests (no collectstatic) turn it off.
MEMORYADMIN_STATIC_MANIFEST = env.bool("MEMORYADMIN_STATIC_MANIFEST", default=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if MEMORYADMIN_STATIC_MANIFEST
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"

# Cookies only over TLS unless DEBUG (`make run` serves plain http on 127.0.0.1).
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
# Pages hand the token to htmx from {{ csrf_token }}; no script reads the cookie.
CSRF_COOKIE_HTTPONLY = True
# HSTS: set SECURE_HSTS_SECONDS (e.g. 31536000) only once the site is served over TLS.
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
# Behind a TLS-terminating proxy, e.g. HTTP_X_FORWARDED_PROTO,https. Only set it
# if the proxy always sets (or strips) that header, or clients could fake https.
SECURE_PROXY_SSL_HEADER = env.tuple("SECURE_PROXY_SSL_HEADER", default=None)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"

# Content Security Policy (django-csp): our own files only, nothing inline, no
# eval (htmx is configured with allowEval false and no indicator styles).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [csp.constants.SELF],
        "script-src": [csp.constants.SELF],
        "style-src": [csp.constants.SELF],
        "img-src": [csp.constants.SELF, "data:"],
        "connect-src": [csp.constants.SELF],
        "frame-ancestors": [csp.constants.NONE],
        "form-action": [csp.constants.SELF],
        "base-uri": [csp.constants.NONE],
        "object-src": [csp.constants.NONE],
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "memoryadmin.audit.middleware.RequestIdLogFilter"}},
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s [%(request_id)s] %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["request_id"]}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"httpx": {"level": "WARNING"}, "httpcore": {"level": "WARNING"}},  # every request at DEBUG
}

# Background jobs (re-summarize, bulk work) on Django's Tasks API; the worker
# is `python manage.py worker`. Tests may use the immediate backend.
# Two queues: content searches ("search", memoryadmin.tasks.SEARCH_QUEUE) have their own, worked by
# their own thread of `manage.py worker`, so a long search never holds up a purge on "default".
TASKS = {
    "default": {
        "BACKEND": env.str("MEMORYADMIN_TASK_BACKEND", default="django_tasks_db.backend.DatabaseBackend"),
        "QUEUES": ["default", "search"],
    }
}
# A running job whose worker has given no sign of life this long (seconds) is resumed by another
# worker (a live worker beats every quarter of it, however long a step of its job takes).
MEMORYADMIN_JOB_STALE_SECONDS = env.float("MEMORYADMIN_JOB_STALE_SECONDS", default=120)
# A job whose worker stopped this many times is ended as failed instead of being resumed again;
# the second resume waits this long (seconds), each later one twice as long as the one before.
MEMORYADMIN_JOB_MAX_ATTEMPTS = env.int("MEMORYADMIN_JOB_MAX_ATTEMPTS", default=3)
MEMORYADMIN_JOB_RETRY_SECONDS = env.float("MEMORYADMIN_JOB_RETRY_SECONDS", default=60)
# A content search that runs longer than this (seconds) stops, keeping the hits found so far.
MEMORYADMIN_SEARCH_BUDGET_SECONDS = env.int("MEMORYADMIN_SEARCH_BUDGET_SECONDS", default=300)
# A content search's results (its hits' snippets and its encrypted query) are deleted this many days
# after it ended, by the worker, unless a bulk job still works from them.
MEMORYADMIN_SEARCH_RESULTS_DAYS = env.int("MEMORYADMIN_SEARCH_RESULTS_DAYS", default=7)

# Keys for erasure certificates' signatures and searches' keyed query hashes, comma-separated: the
# first signs, all verify (services/signing.py). Unset, one is derived from SECRET_KEY.
MEMORYADMIN_SIGNING_KEYS = env.list("MEMORYADMIN_SIGNING_KEYS", default=[])

# Fernet keys for secrets at rest, comma-separated: the first encrypts, all decrypt.
MEMORYADMIN_ENCRYPTION_KEYS = env.list("MEMORYADMIN_ENCRYPTION_KEYS", default=[])

# The environment's connection (the variable names Upstash's own SDK read);
# more connections are added in the app.
UPSTASH_REDIS_REST_URL = env.str("UPSTASH_REDIS_REST_URL", default="")
UPSTASH_REDIS_REST_TOKEN = env.str("UPSTASH_REDIS_REST_TOKEN", default="")
# Optional: the database's read-only token; every read then uses it, only writes the full token.
# The name Vercel's Upstash integration gives it.
UPSTASH_REDIS_REST_READ_ONLY_TOKEN = env.str("UPSTASH_REDIS_REST_READ_ONLY_TOKEN", default="")
MEMORYADMIN_KEY_PATTERN = env.str("MEMORYADMIN_KEY_PATTERN", default="*")
MEMORYADMIN_KEY_PREFIX = env.str("MEMORYADMIN_KEY_PREFIX", default="")
# auto: newest-first for {"type","data"} elements, oldest-first for {"role"} ones.
MEMORYADMIN_LIST_ORDER = env.str("MEMORYADMIN_LIST_ORDER", default="auto")
MEMORYADMIN_SUMMARY_NAMESPACE = env.str("MEMORYADMIN_SUMMARY_NAMESPACE", default="memoryadmin:summary:")
MEMORYADMIN_STORE_TIMEOUT = env.float("MEMORYADMIN_STORE_TIMEOUT", default=5.0)
MEMORYADMIN_STORE_RETRIES = env.int("MEMORYADMIN_STORE_RETRIES", default=2)
MEMORYADMIN_PAGE_SIZE = env.int("MEMORYADMIN_PAGE_SIZE", default=50)
MEMORYADMIN_SCAN_BUDGET = env.int("MEMORYADMIN_SCAN_BUDGET", default=10_000)
MEMORYADMIN_TRANSCRIPT_WINDOW = env.int("MEMORYADMIN_TRANSCRIPT_WINDOW", default=50)
MEMORYADMIN_DEFAULT_TTL = env.int("MEMORYADMIN_DEFAULT_TTL", default=7 * 86400)
# Upstash refuses any request, or reply, over this many bytes: 10 MB on Free and Pay-as-you-go. Every read
# is sized to stay under it (README, "Running against Upstash"); Pro plans and quota increases raise it.
MEMORYADMIN_MAX_REQUEST_BYTES = env.int("MEMORYADMIN_MAX_REQUEST_BYTES", default=10_000_000)
