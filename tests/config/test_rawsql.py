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


def _loaded_both_ways(model, pk):
    """The row loaded by rawsql.instances, and by the ORM's own from_db."""

    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {rawsql.select(model, 't')} FROM {model._meta.db_table} t WHERE t.id = %s",
            [pk],
        )
        row = cursor.fetchone()
    (fast,) = rawsql.instances(row, model)
    names = [f.attname for f in model._meta.concrete_fields]
    return fast, model.from_db("default", names, list(row))


def test_a_row_loads_into_the_instance_from_db_makes(fan, schedule):
    """rawsql builds the instance without Model.__init__ (where __init__ would only
    store the values and send signals nobody listens to): the same __dict__, the
    same state, and it saves and relates as an ORM-loaded one does."""
    from django.contrib.auth import get_user_model

    from queueing.models import QueueToken
    from tests.conftest import admit

    held = hold_seat(fan, schedule, 9)
    token = admit(fan, schedule.concert_id)
    for model, pk in (
        (Reservation, held.pk), (Seat, held.seat_id), (Schedule, schedule.pk),
        (Concert, schedule.concert_id), (QueueToken, token.pk), (get_user_model(), fan.pk),
    ):  # fmt: skip
        assert rawsql._plain(model), model
        fast, orm = _loaded_both_ways(model, pk)
        assert type(fast) is type(orm)
        assert {k: v for k, v in vars(fast).items() if k != "_state"} == {
            k: v for k, v in vars(orm).items() if k != "_state"
        }
        assert (fast._state.adding, fast._state.db) == (orm._state.adding, orm._state.db)
        assert fast == orm and not fast._state.adding
    fast, _ = _loaded_both_ways(Reservation, held.pk)
    assert fast.seat.number == 9 and fast.schedule.concert_id == schedule.concert_id
    fast.end_reason = "x"
    fast.save(update_fields=["end_reason"])
    assert Reservation.objects.get(pk=held.pk).end_reason == "x"


def test_a_model_with_an_init_listener_is_loaded_the_orm_s_way(schedule):
    """The control: with a post_init receiver, the instance goes through __init__,
    so the receiver hears of it, as it would from any ORM query."""
    from django.db.models.signals import post_init

    heard = []

    def listener(sender, instance, **kwargs):
        heard.append(instance.pk)

    post_init.connect(listener, sender=Schedule)
    try:
        fast, _ = _loaded_both_ways(Schedule, schedule.pk)
    finally:
        post_init.disconnect(listener, sender=Schedule)
    assert heard == [schedule.pk, schedule.pk]  # rawsql's load, then from_db's
    fast, _ = _loaded_both_ways(Schedule, schedule.pk)
    assert heard == [schedule.pk, schedule.pk]  # no listener: no __init__, no signal


def test_a_model_whose_fields_do_more_than_store_is_loaded_the_orm_s_way():
    from rest_framework.authtoken.models import TokenProxy

    assert not rawsql._plain(TokenProxy)  # its fields' attributes live on Token


def test_a_model_with_its_own_init_is_loaded_through_it(schedule, monkeypatch):
    real = Concert.__init__

    def own_init(self, *args, **kwargs):
        real(self, *args, **kwargs)
        self.touched = True

    monkeypatch.setattr(Concert, "__init__", own_init)
    rawsql._plain.cache_clear()
    try:
        fast, _ = _loaded_both_ways(Concert, schedule.concert_id)
    finally:
        monkeypatch.undo()
        rawsql._plain.cache_clear()
    assert fast.touched


# --- the kept cursor -----------------------------------------------------------------


def test_the_hot_paths_cursor_is_kept_from_one_statement_to_the_next():
    """rawsql.cursor() keeps one cursor per connection (psycopg keeps its loaders and
    dumpers per cursor). The control: Django's connection.cursor() makes a new one."""
    with rawsql.cursor() as first:
        first.execute("SELECT 1")
        assert first.fetchone() == (1,)
    with rawsql.cursor() as second:
        second.execute("SELECT %s::int", [2])
        assert second.fetchone() == (2,)
    assert second.cursor is first.cursor and not second.cursor.closed
    with connection.cursor() as a, connection.cursor() as b:
        assert a.cursor is not b.cursor


def test_a_block_inside_another_gets_its_own_cursor_and_leaves_the_outer_rows_alone():
    with rawsql.cursor() as outer:
        outer.execute("SELECT g FROM generate_series(1, 3) g")
        assert outer.fetchone() == (1,)
        with rawsql.cursor() as inner:
            assert inner.cursor is not outer.cursor
            inner.execute("SELECT 42")
            assert inner.fetchone() == (42,)
        assert outer.fetchall() == [(2,), (3,)]
    with rawsql.cursor() as again:
        assert again.cursor is outer.cursor  # the kept one, free again


def test_an_error_leaves_the_kept_cursor_usable(fan):
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic(), rawsql.cursor() as failing:
        failing.execute("INSERT INTO auth_user (id) VALUES (%s)", [fan.pk])
    with rawsql.cursor() as after:
        after.execute("SELECT id FROM auth_user WHERE id = %s", [fan.pk])
        assert after.fetchone() == (fan.pk,) and after.cursor is failing.cursor


def test_a_new_connection_or_query_logging_gets_a_new_cursor():
    from django.test.utils import CaptureQueriesContext

    with rawsql.cursor() as plain:
        plain.execute("SELECT 1")
    with CaptureQueriesContext(connection) as captured, rawsql.cursor() as logged:
        logged.execute("SELECT 2")
    assert logged.cursor is not plain.cursor
    assert [q["sql"] for q in captured.captured_queries] == ["SELECT 2"]
    with rawsql.cursor() as unlogged:
        unlogged.execute("SELECT 3")
    assert unlogged.cursor is not logged.cursor  # logging off again: not the debug one
    assert len(captured.captured_queries) == 1


@pytest.mark.django_db(transaction=True)
def test_after_a_reconnect_the_kept_cursor_is_not_used():
    with rawsql.cursor() as before:
        before.execute("SELECT 1")
    connection.close()
    with rawsql.cursor() as after:
        after.execute("SELECT 1")
        assert after.fetchone() == (1,)
    assert after.cursor is not before.cursor and before.cursor.connection.closed


def test_an_insert_unless_taken_writes_nothing_and_raises_nothing_on_a_taken_key(fan):
    """The idempotency claim's insert: a second row with the same unique values is not
    written, None says so, and the transaction around it goes on unbroken (no error,
    so no savepoint). The control: the plain insert raises IntegrityError."""
    from django.db import IntegrityError, transaction

    now = timezone.now()

    def record(print_: str) -> IdempotencyRecord:
        return IdempotencyRecord(
            user_id=fan.pk, scope="s", key="k", fingerprint=print_, started_at=now,
            expires_at=now,
        )  # fmt: skip

    with transaction.atomic():
        first = rawsql.insert(record("a"), unless_taken=True)
        assert first is not None and not first._state.adding
        assert rawsql.insert(record("b"), unless_taken=True) is None
        assert IdempotencyRecord.objects.get(pk=first.pk).fingerprint == "a"  # usable still
    with pytest.raises(IntegrityError), transaction.atomic():
        rawsql.insert(record("c"))
    assert list(IdempotencyRecord.objects.values_list("fingerprint", flat=True)) == ["a"]


def test_an_insert_with_a_condition_writes_only_where_it_holds(fan, schedule):
    """rawsql.insert's `where`: the hold's checks ride in its insert."""
    seat = Seat.objects.get(schedule=schedule, number=1)
    now = timezone.now()

    def hold() -> Reservation:
        return Reservation(
            user=fan, schedule=schedule, seat=seat, status="held", price=1,
            created_at=now, expires_at=now,
        )  # fmt: skip

    free = (
        f"NOT EXISTS (SELECT 1 FROM {Reservation._meta.db_table} r WHERE r.seat_id = %s)",
        [seat.pk],
    )
    made = rawsql.insert(hold(), where=free)
    assert made is not None and not made._state.adding
    assert Reservation.objects.get(pk=made.pk).seat_id == seat.pk
    assert rawsql.insert(hold(), where=free) is None  # the condition now fails: nothing written
    assert Reservation.objects.count() == 1


def test_an_instance_from_values_is_the_one_its_row_loads_into(fan, schedule):
    """rawsql.loaded: the line-up's new token and a poll's token from the mirror are
    made from values the caller holds, as if read back."""
    held = hold_seat(fan, schedule, 11)
    values = {f.attname: getattr(held, f.attname) for f in Reservation._meta.concrete_fields}
    made = rawsql.loaded(Reservation, values)
    read, _ = _loaded_both_ways(Reservation, held.pk)
    assert vars(made).keys() == vars(read).keys()
    assert _values(made) == _values(read) and not made._state.adding
    with pytest.raises(KeyError):  # every field, or it is not a row
        rawsql.loaded(Reservation, {k: v for k, v in values.items() if k != "price"})
