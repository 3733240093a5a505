"""Switchboard settings: every value that varies between deployments comes from the environment.

The embedded run (no environment at all) uses SQLite, an in-memory channel layer, eager Celery
and the offline demo model. Production values are listed in the README.
"""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import environ
from celery.schedules import crontab
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
# A weak key with DEBUG off is refused where it would sign something: the ASGI/WSGI entry points
# don't start, and `check --deploy` fails (voiceproject/secret_key.py). Commands that sign nothing
# (collectstatic in the image build, CI's makemigrations) may run with a throwaway one.

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
# While the database is unreachable, live calls' writes wait in memory, in order, up to this many
# (about 1 KB each); past it new writes are dropped with an ERROR line.
RELAY_WRITE_QUEUE_LIMIT = env.int("RELAY_WRITE_QUEUE_LIMIT", default=100_000)
# A socket that takes a call over from another server process waits this long for it to stop.
HANDOVER_TIMEOUT_SECONDS = env.float("HANDOVER_TIMEOUT_SECONDS", default=3.0)
# Agent sockets whose key staff revoked are closed within this long (each server process checks
# the keys of its connected agents, one query, only while some are connected).
AGENT_KEY_RECHECK_SECONDS = env.float("AGENT_KEY_RECHECK_SECONDS", default=10.0)
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
    "axes",  # admin login throttling and lockout; its attempts and lockouts are in the admin
    "voiceproject.apps.SwitchboardConfig",  # the deployment checks
    "agents",
    "calls",
    "outbound",  # signed post-call webhooks to staff-registered endpoints
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
    "axes.middleware.AxesMiddleware",  # last, as axes asks: turns a lockout into its 429 page
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
            # channels_redis waits up to 5 s in BZPOPMIN for a message, and redis-py 8 gives up
            # reading after 5 s by default: a longer read timeout, or idle receivers time out.
            "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 15}]},
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
# First retry delay of a summary while the model is unavailable; doubles on each retry (5 s:
# 5, 10, 20, 40, 80 s over the 5 retries).
SUMMARY_RETRY_BASE_SECONDS = env.float("SUMMARY_RETRY_BASE_SECONDS", default=5.0)
# The sweep (calls/summaries/sweep.py) queues again every summary left "queued" or "running" this
# long without news: the broker lost its message, or its worker died. It must exceed the task's
# hard time limit (a live attempt is never taken over) and the longest retry wait. With the
# interval, a lost summary is queued again within two minutes (issue 14's target).
SUMMARY_STALE_AFTER_SECONDS = env.float("SUMMARY_STALE_AFTER_SECONDS", default=100.0)
SUMMARY_SWEEP_INTERVAL_SECONDS = env.float("SUMMARY_SWEEP_INTERVAL_SECONDS", default=15.0)
# A summary asked for longer ago than this and still not written fails (Re-run summary retries it).
SUMMARY_GIVE_UP_AFTER_SECONDS = env.float("SUMMARY_GIVE_UP_AFTER_SECONDS", default=24 * 3600.0)
if SUMMARY_STALE_AFTER_SECONDS <= CELERY_TASK_TIME_LIMIT:
    raise ImproperlyConfigured("SUMMARY_STALE_AFTER_SECONDS must exceed the task's hard time limit (90 s).")
# Outbound webhooks (outbound/): each POST's timeout (per network operation), and retries with
# exponential backoff and jitter: 10 s, doubling, capped at 300 s, 16 attempts in all (about
# 45 to 55 minutes), then the delivery fails (the admin can re-send it). The cap stays below the
# visibility timeout, as a summary's retry wait does. The sweep queues again a delivery whose retry
# message was lost.
WEBHOOK_TIMEOUT_SECONDS = env.float("WEBHOOK_TIMEOUT_SECONDS", default=10.0)
WEBHOOK_MAX_ATTEMPTS = env.int("WEBHOOK_MAX_ATTEMPTS", default=16)
WEBHOOK_RETRY_BASE_SECONDS = env.float("WEBHOOK_RETRY_BASE_SECONDS", default=10.0)
WEBHOOK_RETRY_MAX_SECONDS = env.float("WEBHOOK_RETRY_MAX_SECONDS", default=300.0)
WEBHOOK_SWEEP_INTERVAL_SECONDS = env.float("WEBHOOK_SWEEP_INTERVAL_SECONDS", default=60.0)
if WEBHOOK_MAX_ATTEMPTS < 1:
    raise ImproperlyConfigured("WEBHOOK_MAX_ATTEMPTS must be at least 1.")
# A message a worker took and never acknowledged (the worker was killed) goes back to the queue
# after this long. It must exceed a summary message's longest life: its retry wait (at most
# 300 s, writer.MAX_RETRY_DELAY_SECONDS) plus the hard time limit (90 s). Kombu's default is 1 h.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT_SECONDS", default=600),
    # Publishing while Redis is unreachable fails in seconds, not at the OS's TCP timeout.
    "socket_connect_timeout": 5,
}
# Workers wait for Redis at startup as they do after losing it (compose starts them together).
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A worker that loses Redis lets its running summaries finish: they write to PostgreSQL, and one
# whose acknowledgement is lost meanwhile comes back after the visibility timeout and finds its
# summary done. Cancelling them would only pay the model for each twice.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
# Periodic tasks, run by `celery -A voiceproject beat` (one beat process per deployment).
CELERY_BEAT_SCHEDULE = {
    # Daily, off-peak: calls past CALL_RETENTION_DAYS deleted or anonymised (nothing when 0).
    "calls-retention": {"task": "calls.tasks.apply_call_retention", "schedule": crontab(hour=3, minute=30)},
    # Summaries whose message or worker was lost, queued again; a run missed while the workers
    # are down expires instead of piling up (the next one does the same work).
    "summaries-sweep": {
        "task": "calls.tasks.summaries_sweep",
        "schedule": SUMMARY_SWEEP_INTERVAL_SECONDS,
        "options": {"expires": SUMMARY_SWEEP_INTERVAL_SECONDS},
    },
    # Webhook deliveries due whose retry message was lost, queued again (outbound/sweep.py).
    "webhooks-sweep": {
        "task": "outbound.tasks.deliveries_sweep",
        "schedule": WEBHOOK_SWEEP_INTERVAL_SECONDS,
        "options": {"expires": WEBHOOK_SWEEP_INTERVAL_SECONDS},
    },
}

# --- Auth, i18n, static ---------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "admin:login"
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: a locked-out login never reaches the password check
    "django.contrib.auth.backends.ModelBackend",
]

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
BEHIND_TLS_PROXY = env.bool("BEHIND_TLS_PROXY", default=False)
if BEHIND_TLS_PROXY:
    # Only when the proxy always sets (or strips) X-Forwarded-Proto.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Plain http that reached us through the TLS proxy is redirected to https. Twilio calls the https
# PUBLIC_BASE_URL, so its webhooks are never redirected (and websockets bypass this middleware).
# /health/ is exempt: compose's health check asks http://127.0.0.1:8000 directly, not via the proxy.
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=BEHIND_TLS_PROXY)
SECURE_REDIRECT_EXEMPT = [r"^health/$"]
# HSTS makes browsers refuse plain http for this host for that long: a promise that is hard to take
# back, so off unless asked for (production: 31536000, a year, with subdomains and preload).
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)

# Admin logins (django-axes): after LOGIN_FAILURE_LIMIT wrong passwords for one username from one
# address, that pair is locked out for LOGIN_LOCKOUT_MINUTES (staff unlock it sooner under Axes
# in the admin). The pair, not the address alone: one mistyping colleague behind the office NAT
# doesn't lock everyone out, and nobody can lock the admin out by guessing at its username.
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.float("LOGIN_LOCKOUT_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "voiceproject.client_ip.client_ip"  # the proxy's X-Forwarded-For, only behind it
# Every failure is logged at WARNING with username and address (axes masks both by default); the
# password never is, whatever this says.
AXES_SENSITIVE_PARAMETERS: list[str] = []

# --- Privacy --------------------------------------------------------------------------------
# Calls older than this many days are deleted or anonymised, daily (calls/privacy/retention.py).
# 0 keeps them forever.
CALL_RETENTION_DAYS = env.int("CALL_RETENTION_DAYS", default=0)
# "delete": calls and their turns go. "anonymise": numbers, what was said, the summary and the
# caller's custom parameters go; the call's status, timings and turn count stay for reports.
CALL_RETENTION_MODE = env.str("CALL_RETENTION_MODE", default="delete")
if CALL_RETENTION_MODE not in ("delete", "anonymise"):
    raise ImproperlyConfigured('CALL_RETENTION_MODE must be "delete" or "anonymise".')
if CALL_RETENTION_DAYS < 0:
    raise ImproperlyConfigured("CALL_RETENTION_DAYS must be 0 (keep forever) or a number of days.")

# --- Logging --------------------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
    },
    # Phone numbers are masked in every line written (voiceproject/log_filters.py): logs are kept
    # longer, and read by more people, than the calls they are about.
    "filters": {"mask_phone_numbers": {"()": "voiceproject.log_filters.MaskPhoneNumbers"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["mask_phone_numbers"]}
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.channels.server": {"level": "WARNING"},
        # A line for every request to the model: noise in a call's log, and CPU on its way.
        "httpx": {"level": "WARNING"},
        "httpx2": {"level": "WARNING"},
    },
}
