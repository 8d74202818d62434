"""A hold's first read, the date with the seat's live holder
(concerts.selectors._schedule_get_with_holder), reads the seat by its number on the
date and then that seat's reservations: two index reads, in the plan a busy
connection caches too (docs/performance.md, round nine). Asked by the reservation's
date, the cached plan read all the date's reservations and every seat of that
number across the dates; that is the control. The same read on a fast lane, which
also authenticates the fan's API token (a key the cache lacked), plans the same way,
with the token read by its key.
"""

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.utils import timezone
from rest_framework.authtoken.models import Token

from concerts import selectors
from concerts.models import Reservation
from tests.factories import ConcertFactory, make_schedule
from tests.plans import generic_plan, plan, statement_of

pytestmark = pytest.mark.django_db

DATES, HISTORY = 60, 3  # dates of 50 seats; ended holds per seat before the live one

NEW = (
    "FROM concerts_seat s JOIN concerts_reservation r ON r.seat_id = s.id"
    " WHERE s.schedule_id = d.id AND s.number = %s"
)
OLD = (
    "FROM concerts_reservation r JOIN concerts_seat s ON s.id = r.seat_id"
    " WHERE r.schedule_id = d.id AND s.number = %s"
)


@pytest.fixture
def busy_dates():
    """DATES dates whose every seat was held HISTORY times (each hold expired), and is held now."""
    concert = ConcertFactory()
    dates = [make_schedule(concert) for _ in range(DATES)]
    with connection.cursor() as cursor:
        cursor.execute("SELECT COALESCE(MAX(id), 0) FROM auth_user")
        (first,) = cursor.fetchone()
        cursor.execute(
            "INSERT INTO auth_user (id, password, is_superuser, username, first_name,"
            " last_name, email, is_staff, is_active, date_joined)"
            " SELECT g, '!', false, 'plan' || g, '', '', '', false, true, now()"
            " FROM generate_series(%s::bigint, %s::bigint) g",
            [first + 1, first + HISTORY + 1],
        )
        cursor.execute(
            "INSERT INTO concerts_reservation (user_id, schedule_id, seat_id, status, price,"
            " created_at, expires_at, ended_at, end_reason)"
            " SELECT %s + h, s.schedule_id, s.id,"
            " CASE WHEN h > %s THEN 'held' ELSE 'expired' END, s.price, now(),"
            " CASE WHEN h > %s THEN now() + interval '5 minutes' END,"
            " CASE WHEN h > %s THEN NULL ELSE now() END,"
            " CASE WHEN h > %s THEN '' ELSE 'expired' END"
            " FROM concerts_seat s CROSS JOIN generate_series(1, %s) h"
            " WHERE s.schedule_id = ANY(%s) ORDER BY h, s.id",
            [first, HISTORY, HISTORY, HISTORY, HISTORY, HISTORY + 1, [d.pk for d in dates]],
        )
        cursor.execute("ANALYZE concerts_seat")
        cursor.execute("ANALYZE concerts_reservation")
    return dates


@pytest.mark.parametrize("signed", [False, True], ids=["fan-known", "api-key"])
def test_the_holder_is_read_by_the_seat_then_its_reservations(busy_dates, signed):
    date = busy_dates[DATES // 2]
    planner = get_user_model().objects.filter(username__startswith="plan").first()
    api_key = Token.objects.create(user=planner).key if signed else None
    sql, params = statement_of(
        lambda: selectors._schedule_get_with_holder(
            schedule_id=date.pk, seat_number=7, now=timezone.now(), api_key=api_key
        ),
        "concerts_schedule d",
    )
    assert NEW in sql and ("authtoken_token t" in sql) == signed
    for planned in (plan, generic_plan):
        chosen = planned(sql, params)
        assert "seat_unique_number" in chosen, chosen
        assert ("Index Scan using authtoken_token" in chosen) == signed, chosen  # by its key
        assert not reads_the_dates_reservations(chosen), chosen
        # Control: asked by the reservation's date, the plan reads the date's
        # reservations (then each one's seat), or every seat with that number.
        control = planned(sql.replace(NEW, OLD), params)
        assert "seat_unique_number" not in control, control
        assert reads_the_dates_reservations(control) or "Seq Scan on concerts_seat" in control


def reads_the_dates_reservations(chosen: str) -> bool:
    return any(
        way in chosen
        for way in (
            "reservation_schedule_status",
            "concerts_reservation_schedule_id",
            "Seq Scan on concerts_reservation",
        )
    )


def test_the_holder_read_by_the_seat_is_the_seats_live_reservation(busy_dates):
    date = busy_dates[DATES // 2]
    live = Reservation.objects.get(schedule=date, seat__number=7, status="held")
    _, holder, _ = selectors._schedule_get_with_holder(
        schedule_id=date.pk, seat_number=7, now=timezone.now()
    )
    assert holder == (live.pk, live.user_id)
    Reservation.objects.filter(pk=live.pk).update(
        status="expired", ended_at=timezone.now(), end_reason="released"
    )
    _, holder, _ = selectors._schedule_get_with_holder(
        schedule_id=date.pk, seat_number=7, now=timezone.now()
    )
    assert holder is None  # only ended ones left on that seat
