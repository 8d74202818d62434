"""The Celery app. Task modules are discovered from the apps; the beat schedule is here."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("config")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Jobs are added by the issues that need them; each entry names a task by its path.
app.conf.beat_schedule = {}
