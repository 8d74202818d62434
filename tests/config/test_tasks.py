"""Every Celery task is wired to the service it names, at the interval the docs give
(issue 10). Tasks are called directly, never with CELERY_TASK_ALWAYS_EAGER."""

import re
from importlib import import_module

import pytest
from django.conf import settings

from config.celery import app

pytestmark = pytest.mark.django_db

ROWS = re.compile(
    r"^\| `(?P<entry>[\w-]+)` \| `(?P<task>[\w.]+)` \| (?P<every>[^|]+) \| "
    r"`(?P<service>[\w.]+)` \|",
    re.M,
)


def documented():
    text = (settings.BASE_DIR / "docs" / "architecture.md").read_text()
    return {m["entry"]: m.groupdict() for m in ROWS.finditer(text)}


def seconds(every: str) -> float:
    named = re.fullmatch(r"`(QUEUE_\w+_INTERVAL)` \(\d+ s\)", every.strip())
    if named:
        return float(getattr(settings, named[1]))
    return float(re.fullmatch(r"(\d+) s", every.strip())[1])


def test_the_docs_table_is_the_beat_schedule():
    docs, schedule = documented(), app.conf.beat_schedule
    assert set(docs) == set(schedule)
    for entry, row in docs.items():
        assert schedule[entry]["task"] == row["task"], entry
        assert schedule[entry]["schedule"] == seconds(row["every"]), entry


@pytest.mark.parametrize("entry", sorted(app.conf.beat_schedule))
def test_each_task_calls_the_service_the_docs_name(entry, monkeypatch):
    app.loader.import_default_modules()
    row = documented()[entry]
    task = app.tasks[row["task"]]
    module_name, function = row["service"].rsplit(".", 1)
    calls = []

    def fake_service(**kwargs):
        calls.append(kwargs)
        return "the service's answer"

    monkeypatch.setattr(import_module(module_name), function, fake_service)
    task_module = import_module(task.__module__)
    if hasattr(task_module, function):  # imported by name into the task module
        monkeypatch.setattr(task_module, function, fake_service)
    assert task.run() == "the service's answer"
    assert len(calls) == 1 and set(calls[0]) <= {"now"}
