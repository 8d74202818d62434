"""config.rawsql turns a plain SQL row into model instances exactly as the ORM does."""

import pytest
from django.db import connection
from django.utils import timezone

from concerts.models import Concert, Reservation, Schedule, Seat
from config import rawsql
from config.models import IdempotencyRecord
from tests.conftest import hold_seat

pytestmark = pytest.mark.django_db


def _values(instance) -> dict:
    return {f.attname: getattr(instance, f.attname) for f in type(instance)._meta.concrete_fields}


def test_joined_rows_load_like_the_orm(fan, schedule):
    held = hold_seat(fan, schedule, 7)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {rawsql.select(Reservation, 'r')}, {rawsql.select(Seat, 's')},"
            f" {rawsql.select(Schedule, 'd')}, {rawsql.select(Concert, 'c')}"
            " FROM concerts_reservation r JOIN concerts_seat s ON s.id = r.seat_id"
            " JOIN concerts_schedule d ON d.id = r.schedule_id"
            " JOIN concerts_concert c ON c.id = d.concert_id WHERE r.id = %s",
            [held.pk],
        )
        row = cursor.fetchone()
    assert len(row) == sum(rawsql.width(m) for m in (Reservation, Seat, Schedule, Concert))
    reservation, seat, date, concert = rawsql.instances(row, Reservation, Seat, Schedule, Concert)
    orm = Reservation.objects.select_related("seat", "schedule__concert").get(pk=held.pk)
    assert _values(reservation) == _values(orm)
    assert _values(seat) == _values(orm.seat) and seat.number == 7
    assert _values(date) == _values(orm.schedule)
    assert _values(concert) == _values(orm.schedule.concert)
    assert not reservation._state.adding and reservation._state.db == "default"


def test_a_json_field_is_converted_as_the_orm_converts_it(fan):
    now = timezone.now()
    record = IdempotencyRecord.objects.create(
        user=fan, scope="s", key="k", fingerprint="f", state="done", response_status=201,
        response_body={"a": [1, 2]}, started_at=now, expires_at=now,
    )  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {rawsql.select(IdempotencyRecord, 'i')} FROM config_idempotencyrecord i"
            " WHERE i.id = %s",
            [record.pk],
        )
        (loaded,) = rawsql.instances(cursor.fetchone(), IdempotencyRecord)
    assert loaded.response_body == {"a": [1, 2]}
    assert _values(loaded) == _values(IdempotencyRecord.objects.get(pk=record.pk))


def test_params_leave_values_as_they_are_on_postgresql():
    now = timezone.now()
    assert rawsql.params([1, "x", now, None]) == [1, "x", now, None]
    assert rawsql.for_no_key_update() == " FOR NO KEY UPDATE"
    assert rawsql.for_no_key_update(of="r") == " FOR NO KEY UPDATE OF r"


def test_an_insert_writes_the_row_save_would_write(fan, schedule):
    seat = Seat.objects.get(schedule=schedule, number=3)
    now = timezone.now()
    made = rawsql.insert(
        Reservation(
            user_id=fan.pk, schedule_id=schedule.pk, seat=seat, status="held", price=seat.price,
            created_at=now, expires_at=now,
        )
    )  # fmt: skip
    assert made.pk and not made._state.adding
    assert _values(made) == _values(Reservation.objects.get(pk=made.pk))


def test_an_insert_refuses_a_model_with_save_receivers(schedule):
    with pytest.raises(TypeError):  # the seat cache listens to Seat saves
        rawsql.insert(Seat(schedule=schedule, number=51, price=1))
