"""Queue positions come from bucket counts; a rebuild repairs any drift (issue 9)."""

from io import StringIO

import pytest
from django.core.management import call_command
from django.db.models import Sum

from config.celery import app
from queueing import selectors, services, tasks
from queueing.models import QueueBucket, QueueToken
from tests.queueing.conftest import line_up, set_capacity

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def small_buckets(monkeypatch):
    """Buckets of 2 ids, so a handful of fans spans several buckets (drift shows
    only across bucket boundaries: inside its own bucket a position is counted)."""
    import queueing.models

    for module in (queueing.models, selectors, services):
        monkeypatch.setattr(module, "BUCKET_SIZE", 2)


def positions(tokens):
    return [selectors.queue_position(token=QueueToken.objects.get(pk=t.pk)) for t in tokens]


def test_a_deleted_fan_leaves_the_counts_wrong_until_the_rebuild(concert, now):
    set_capacity(concert, 0)
    tokens = line_up(concert, 6, now)
    tokens[1].user.delete()  # cascades to the token without passing through a service
    alive = [t for i, t in enumerate(tokens) if i != 1]
    drifted = positions(alive)
    assert drifted != [1, 2, 3, 4, 5] and drifted[-1] == 6  # a ghost counted ahead of fans
    assert services.queue_buckets_rebuild() >= 1
    assert positions(alive) == [1, 2, 3, 4, 5]
    assert services.queue_buckets_rebuild() == 0  # nothing left to repair


def test_the_rebuild_repairs_corrupted_and_missing_bucket_rows(concert, now):
    set_capacity(concert, 0)
    tokens = line_up(concert, 8, now)
    QueueBucket.objects.filter(concert=concert).update(waiting=50)  # corrupt every stripe
    first = QueueBucket.objects.filter(concert=concert).order_by("number", "stripe").first()
    first.delete()  # and lose one row
    assert positions(tokens) != list(range(1, 9))
    call_command("queue_rebuild_buckets", stdout=StringIO())
    assert positions(tokens) == list(range(1, 9))
    total = QueueBucket.objects.filter(concert=concert).aggregate(n=Sum("waiting"))["n"]
    assert total == QueueToken.objects.filter(concert=concert, status="waiting").count() == 8


def test_the_rebuild_only_touches_the_concert_it_is_given(concert, now):
    from tests.factories import ConcertFactory

    other = ConcertFactory()
    set_capacity(concert, 0)
    set_capacity(other, 0)
    line_up(concert, 3, now)
    line_up(other, 3, now)
    QueueBucket.objects.update(waiting=9)
    assert services.queue_buckets_rebuild(concert_id=concert.id) >= 1
    mine = QueueBucket.objects.filter(concert=concert).aggregate(n=Sum("waiting"))["n"]
    theirs = QueueBucket.objects.filter(concert=other).aggregate(n=Sum("waiting"))["n"]
    assert mine == 3 and theirs != 3


def test_beat_runs_the_rebuild_task_every_five_minutes():
    entry = app.conf.beat_schedule["queue-rebuild-buckets"]
    assert entry["task"] == "queueing.rebuild_buckets" == tasks.rebuild_buckets.name
    assert entry["schedule"] == 300.0


def test_the_rebuild_task_calls_the_service(concert, now):
    set_capacity(concert, 0)
    line_up(concert, 2, now)
    QueueBucket.objects.update(waiting=7)
    assert tasks.rebuild_buckets() >= 1
    assert QueueBucket.objects.aggregate(n=Sum("waiting"))["n"] == 2
