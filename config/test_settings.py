"""Settings for the test suite: always real PostgreSQL and real Redis.

The defaults point at the local servers on 127.0.0.1; DATABASE_URL and
REDIS_URL override them. SQLite is refused, so no test can pass on it by accident.
"""

import os
import secrets

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/concert_reservation")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/14")
# A prefix of this run's own: the suite deletes only keys under it, never the rest
# of the Redis database (which may be a developer's). Worker processes that a test
# starts inherit it through the environment.
os.environ.setdefault("CACHE_KEY_PREFIX", f"cr-test-{secrets.token_hex(6)}")

from config.settings import *  # noqa: E402,F403
from config.settings import DATABASES  # noqa: E402

if DATABASES["default"]["ENGINE"] not in ("django.db.backends.postgresql", "config.postgresql"):
    raise RuntimeError(
        "The test suite runs on PostgreSQL only; set DATABASE_URL to a postgres URL."
    )

DATABASES["default"]["CONN_MAX_AGE"] = 0
# Tasks a test sends go to a queue of this run's own, under its key prefix (so the
# suite's clean-up deletes them), never to a developer's worker on the same Redis.
CELERY_TASK_DEFAULT_QUEUE = f"{os.environ['CACHE_KEY_PREFIX']}:celery"
# A worker a test starts answers no remote control (no shared pidbox keys in Redis).
CELERY_WORKER_ENABLE_REMOTE_CONTROL = False
SECURE_SSL_REDIRECT = False
SESSION_COOKIE_SECURE = False
CSRF_COOKIE_SECURE = False
SECURE_HSTS_SECONDS = 0
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True

# WhiteNoise warns when STATIC_ROOT is absent; tests serve static from the finders.
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # noqa: F405
