"""Two web processes, started separately with their own connection pools, serve one
sale (issue 14): positions stay exact FIFO, capacity is never exceeded, and no seat
is sold twice, whichever process a request reaches."""

import threading
from collections import Counter

import httpx
import pytest
from django.db.models import Count

from concerts.models import Reservation
from queueing import selectors
from queueing.models import QueueToken, WaitingRoom
from tests.concurrency.helpers import errors, run_concurrently
from tests.conftest import token_client
from tests.factories import ConcertFactory, UserFactory, make_schedule

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_two_web_processes_keep_fifo_capacity_and_single_sales(two_web_processes):
    concert = ConcertFactory()
    WaitingRoom.objects.filter(pk=concert.pk).update(max_active=10)
    schedule = make_schedule(concert)
    fans = UserFactory.create_batch(60)
    auth = {f.pk: token_client(f)._credentials["HTTP_AUTHORIZATION"] for f in fans}
    lock = threading.Lock()
    answers: dict[int, dict] = {}

    def line_up(index, fan):
        url = two_web_processes[index % 2]  # alternate fans between the two processes
        response = httpx.post(
            f"{url}/api/v1/concerts/{concert.id}/queue",
            headers={"Authorization": auth[fan.pk]},
            timeout=30,
        )
        assert response.status_code == 201, response.text
        with lock:
            answers[fan.pk] = response.json()

    results = run_concurrently(line_up, list(enumerate(fans)))
    assert errors(results) == []
    tokens = list(QueueToken.objects.filter(concert=concert).order_by("id"))
    assert len(tokens) == 60
    active = [t for t in tokens if t.status == "active"]
    assert len(active) == 10  # capacity, never more, whichever process admitted them
    assert active == tokens[:10]  # the first ten in line, exactly
    # Once every line-up has committed, the line is exactly 1..50 in arrival (id) order,
    # whichever process served each fan.
    final = [selectors.queue_position(token=t) for t in tokens[10:]]
    assert final == list(range(1, 51))
    # An answer counts only fans ahead in line, never one behind: it is at most one
    # more than the tokens with a smaller id. (It need not equal the final place: a
    # fan who lined up a moment earlier on the other process may not have committed
    # yet, and a fan ahead whose admission had committed may still count while its
    # after-commit write to the Redis mirror is in flight, for milliseconds.)
    for ahead, token in enumerate(tokens):
        if token.status == "waiting":
            assert answers[token.user_id]["position"] <= ahead + 1

    # The ten admitted fans all go for seats 1 to 5, through both processes at once.
    def hold(index, token):
        url = two_web_processes[index % 2]
        response = httpx.post(
            f"{url}/api/v1/reservations",
            headers={"Authorization": auth[token.user_id], "X-Queue-Token": token.key},
            json={"schedule_id": schedule.id, "seat_number": index % 5 + 1},
            timeout=30,
        )
        return response.status_code

    outcome = run_concurrently(hold, list(enumerate(active)))
    assert errors(outcome) == []
    assert Counter(v for _, v in outcome) == {201: 5, 409: 5}
    per_seat = (
        Reservation.objects.filter(schedule=schedule, status__in=["held", "confirmed"])
        .values("seat").annotate(n=Count("id"))
    )  # fmt: skip
    assert sorted(row["n"] for row in per_seat) == [1] * 5
