"""Settings for Memory Admin. Everything comes from the environment (or `.env`).

`.env.example` documents every variable. DEBUG is off unless set; the dev
defaults that `make run` needs are exported by `make run`, not baked in here.
"""

from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env")

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_htmx",
    "template_partials",
    "memoryadmin.dashboard",
    "memoryadmin.connections",
    "memoryadmin.localstore",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "memoryadmin.dashboard.middleware.StoreErrorMiddleware",
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
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "session_list"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = env.path("STATIC_ROOT", default=BASE_DIR / "var" / "static")

SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"httpx": {"level": "WARNING"}},
}

# Fernet keys for secrets at rest, comma-separated: the first encrypts, all decrypt.
MEMORYADMIN_ENCRYPTION_KEYS = env.list("MEMORYADMIN_ENCRYPTION_KEYS", default=[])

# The environment's connection (the variable names Upstash's own SDK read);
# more connections are added in the app.
UPSTASH_REDIS_REST_URL = env.str("UPSTASH_REDIS_REST_URL", default="")
UPSTASH_REDIS_REST_TOKEN = env.str("UPSTASH_REDIS_REST_TOKEN", default="")
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
