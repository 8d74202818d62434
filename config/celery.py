"""The Celery app. Task modules are discovered from the apps; the beat schedule is here."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("config")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def _every(setting: str, default: int) -> int:
    from django.conf import settings

    return getattr(settings, setting, default)


# Each entry names a task by its registered name; intervals are in seconds.
app.conf.beat_schedule = {
    # A scheduled sale starts (its pre-queue is shuffled into the line) within a
    # second of its time; a line-up after the time starts it too, so a late tick
    # never lets an after-the-start arrival ahead of the pre-queue.
    "queue-start-sales": {
        "task": "queueing.start_sales",
        "schedule": 1.0,
        "options": {"expires": 5},
    },
    "queue-admit-waiting": {
        "task": "queueing.admit_waiting",
        "schedule": float(_every("QUEUE_ADMISSION_INTERVAL", 5)),
        "options": {"expires": 10},
    },
    "concerts-release-expired-holds": {
        "task": "concerts.release_expired_holds",
        "schedule": 15.0,
        "options": {"expires": 30},
    },
    "purge-idempotency-records": {
        "task": "config.purge_idempotency_records",
        "schedule": 3600.0,
        "options": {"expires": 600},
    },
    # An API token's cached entry whose invalidation could not reach Redis from the
    # process that revoked it (config.auth): delivered from PostgreSQL.
    "deliver-pending-forgets": {
        "task": "config.deliver_pending_forgets",
        "schedule": 2.0,
        "options": {"expires": 5},
    },
    "queue-repair-mirror": {
        "task": "queueing.repair_mirror",
        "schedule": float(_every("QUEUE_MIRROR_REPAIR_INTERVAL", 10)),
        "options": {"expires": 20},
    },
    "queue-rebuild-buckets": {
        "task": "queueing.rebuild_buckets",
        "schedule": 300.0,
        "options": {"expires": 120},
    },
    "queue-expire-stale-tokens": {
        "task": "queueing.expire_stale_tokens",
        "schedule": 5.0,
        "options": {"expires": 10},
    },
}
