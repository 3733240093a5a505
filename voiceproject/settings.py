"""Switchboard settings: every value that varies between deployments comes from the environment.

The embedded run (no environment at all) uses SQLite, an in-memory channel layer, eager Celery
and the offline demo model. Production values are listed in the README.
"""

from __future__ import annotations

import sys
from pathlib import Path
from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()

# --- Core -----------------------------------------------------------------------------------
# No DATABASE_URL means the embedded run on a developer's machine: only then is DEBUG on by default.
EMBEDDED = not env.str("DATABASE_URL", default="")
DEBUG = env.bool("DEBUG", default=EMBEDDED)

SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")
    SECRET_KEY = "embedded-run-only-insecure-key"

PUBLIC_BASE_URL = env.str("PUBLIC_BASE_URL", default="http://127.0.0.1:8000").rstrip("/")
_public = urlsplit(PUBLIC_BASE_URL)

# Loopback is always allowed so in-container health checks can reach /health/.
ALLOWED_HOSTS = [*env.list("ALLOWED_HOSTS", default=[_public.hostname]), "127.0.0.1", "localhost"]
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[f"{_public.scheme}://{_public.netloc}"])

# --- Integrations ---------------------------------------------------------------------------
# Unset in the embedded run: signatures are then accepted only while DEBUG is on.
TWILIO_AUTH_TOKEN = env.str("TWILIO_AUTH_TOKEN", default="")
# Unset: replies come from the offline demo model.
ANTHROPIC_API_KEY = env.str("ANTHROPIC_API_KEY", default="")
# Only for proxies and tests: the SDK's default endpoint otherwise.
ANTHROPIC_BASE_URL = env.str("ANTHROPIC_BASE_URL", default="")
# The SDK's own tracing spans: off unless asked for (they cost CPU on every request).
ANTHROPIC_OPEN_TELEMETRY = env.bool("ANTHROPIC_OPEN_TELEMETRY", default=False)
# For personas on an OpenAI-compatible model that name no key variable of their own.
OPENAI_API_KEY = env.str("OPENAI_API_KEY", default="")
# Empty: api.openai.com; a persona's own base URL wins over both.
OPENAI_BASE_URL = env.str("OPENAI_BASE_URL", default="")
# Media Streams personas' speech providers, for personas that name no key variable of their own.
# Unset: the offline demo transcriber and voice.
TOGETHER_API_KEY = env.str("TOGETHER_API_KEY", default="")
DEEPGRAM_API_KEY = env.str("DEEPGRAM_API_KEY", default="")
CARTESIA_API_KEY = env.str("CARTESIA_API_KEY", default="")
REDIS_URL = env.str("REDIS_URL", default="")

# --- Live calls -----------------------------------------------------------------------------
# Text-to-speech keeps talking after the last token is sent: the agent's `end` and its silence
# timer wait for the estimated speaking time (characters / rate) plus a grace delay.
RELAY_SPEECH_CHARS_PER_SECOND = env.float("RELAY_SPEECH_CHARS_PER_SECOND", default=15.0)
RELAY_END_GRACE_SECONDS = env.float("RELAY_END_GRACE_SECONDS", default=1.0)
# The longest a model may take over one reply before the caller hears the fallback line.
RELAY_REPLY_TIMEOUT_SECONDS = env.float("RELAY_REPLY_TIMEOUT_SECONDS", default=60.0)
# Live calls' turns reach the database together, at most this long after they happen
# (calls/store/recorder.py: fewer, bigger batches leave the event loop the GIL).
RELAY_WRITE_BATCH_SECONDS = env.float("RELAY_WRITE_BATCH_SECONDS", default=0.1)
# Media Streams: the calls' VAD windows are scored together, one ONNX run per tick
# (calls/media/vad.py: BatchedVad). 10 ms costs a barge-in at most that much; at 100 calls, 0
# (a run for whatever is queued at once) spent the process on thread hops and fell seconds behind.
MEDIA_VAD_TICK_MS = env.float("MEDIA_VAD_TICK_MS", default=10.0)

# --- Applications ---------------------------------------------------------------------------
# daphne's app makes `manage.py runserver` serve ASGI, websockets included. It loads Twisted (26 MB
# a process), which nothing else needs: a production server (uvicorn) goes without it.
RUNSERVER = sys.argv[1:2] == ["runserver"]
INSTALLED_APPS = [
    *(["daphne"] if RUNSERVER else []),  # first, so its runserver replaces Django's
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "agents",
    "calls",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "voiceproject.middleware.StaticFilesMiddleware",  # WhiteNoise, async: no thread held per request
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "voiceproject.urls"
ASGI_APPLICATION = "voiceproject.asgi.application"
WSGI_APPLICATION = "voiceproject.wsgi.application"

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
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
if EMBEDDED:
    VAR_DIR.mkdir(exist_ok=True)
DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
}
# The ASGI process holds calls open for minutes: never keep a connection across requests.
DATABASES["default"]["CONN_MAX_AGE"] = 0
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Channels and Celery --------------------------------------------------------------------
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL]},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_TASK_ALWAYS_EAGER = not REDIS_URL
CELERY_TASK_EAGER_PROPAGATES = False
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SOFT_TIME_LIMIT = 60
CELERY_TASK_TIME_LIMIT = 90
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# First retry delay of a summary while the model is unavailable; doubles on each retry.
SUMMARY_RETRY_BASE_SECONDS = env.float("SUMMARY_RETRY_BASE_SECONDS", default=5.0)

# --- Auth, i18n, static ---------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "admin:login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
WHITENOISE_USE_FINDERS = DEBUG

# --- Security when exposed ------------------------------------------------------------------
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
if env.bool("BEHIND_TLS_PROXY", default=False):
    # Only when the proxy always sets (or strips) X-Forwarded-Proto.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- Logging --------------------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.channels.server": {"level": "WARNING"},
        # A line for every request to the model: noise in a call's log, and CPU on its way.
        "httpx": {"level": "WARNING"},
        "httpx2": {"level": "WARNING"},
    },
}
