"""'Sold out', as the waiting room repeats it to the fans in line (advisory)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from concerts import selectors
from concerts.models import Reservation
from queueing import selectors as queue_selectors
from queueing import services as queue_services
from queueing.models import WaitingRoom
from tests.conftest import token_client
from tests.factories import ConcertFactory, UserFactory, make_schedule

pytestmark = pytest.mark.django_db


def sell(schedule, *, leave: int = 0, held: int = 0) -> None:
    """Confirm every seat of the date but the last `leave + held`; hold `held` of those."""
    now = timezone.now()
    buyer = UserFactory()
    seats = list(schedule.seats.order_by("number"))
    rows = [
        Reservation(
            user=buyer, schedule=schedule, seat=seat, price=seat.price, created_at=now,
            status=Reservation.Status.CONFIRMED, confirmed_at=now,
        )
        for seat in seats[: len(seats) - leave - held]
    ] + [
        Reservation(
            user=buyer, schedule=schedule, seat=seat, price=seat.price, created_at=now,
            status=Reservation.Status.HELD, expires_at=now + timedelta(minutes=5),
        )
        for seat in seats[len(seats) - leave - held : len(seats) - leave]
    ]  # fmt: skip
    Reservation.objects.bulk_create(rows)


def test_sold_out_only_when_every_seat_of_every_open_date_is_sold():
    concert = ConcertFactory()
    first, second = make_schedule(concert), make_schedule(concert, starts_in=timedelta(days=8))
    now = timezone.now()
    sell(first)
    sell(second, leave=1)
    assert not selectors.concert_sold_out(concert_id=concert.id, now=now)  # one seat free
    Reservation.objects.filter(schedule=second).delete()
    sell(second, held=1)
    assert not selectors.concert_sold_out(concert_id=concert.id, now=now)  # a hold may lapse
    Reservation.objects.filter(schedule=second).delete()
    sell(second)
    assert selectors.concert_sold_out(concert_id=concert.id, now=now)


def test_a_concert_with_no_open_date_is_not_called_sold_out():
    concert = ConcertFactory()
    assert not selectors.concert_sold_out(concert_id=concert.id, now=timezone.now())
    closed = make_schedule(concert, opened_ago=timedelta(days=-1))  # opens tomorrow
    sell(closed)
    assert not selectors.concert_sold_out(concert_id=concert.id, now=timezone.now())


def test_the_poll_tells_fans_in_line_and_the_page_shows_it(client):
    from django.core.cache import cache

    concert = ConcertFactory()
    WaitingRoom.objects.filter(pk=concert.pk).update(max_active=0)
    schedule = make_schedule(concert)
    early, late = UserFactory(), UserFactory()
    client.force_login(early)
    assert client.post(f"/concerts/{concert.id}/queue/join/").status_code == 302
    token, _ = queue_services.queue_token_issue(
        user=late, concert_id=concert.id, now=timezone.now()
    )
    page = client.get(f"/concerts/{concert.id}/queue/status/").content.decode()
    assert 'id="queue-position">1<' in page and 'id="queue-sold-out"' not in page

    sell(schedule)
    # The shared answer lives SOLD_OUT_TTL seconds (and a second in each process);
    # here it lapses at once.
    queue_selectors.clear_local_estimates()
    cache.delete(f"queue:sold_out:{concert.id}")
    polled = token_client(late).get("/api/v1/queue", HTTP_X_QUEUE_TOKEN=token.key)
    body = polled.json()
    assert (body["status"], body["position"], body["sold_out"]) == ("waiting", 2, True)
    page = client.get(f"/concerts/{concert.id}/queue/status/").content.decode()
    assert 'id="queue-sold-out"' in page and 'id="queue-position">1<' in page


def test_an_ended_turn_is_not_told_anything_about_seats():
    concert = ConcertFactory()
    schedule = make_schedule(concert)
    sell(schedule)
    fan = UserFactory()
    token, _ = queue_services.queue_token_issue(user=fan, concert_id=concert.id, now=timezone.now())
    queue_services.queue_token_leave(token=token, now=timezone.now())
    token.refresh_from_db()
    assert not queue_selectors.queue_token_view(token=token, now=timezone.now()).sold_out
