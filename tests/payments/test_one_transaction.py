"""A keyed payment is one transaction with its stored answer, and no savepoint.

These run with real commits (transaction=True), as a server runs them: no test
transaction wraps the request, so every SAVEPOINT seen is the code's own.

A payment with an Idempotency-Key runs inside config.idempotency.run_once's
transaction, which also stores the answer. Its own atomic block nests there without
a savepoint (two round trips each payment): a refusal rolls the whole transaction
back, and what the refusal keeps on purpose (the seat given back, the failed
attempt on record) is its aftermath, which run_once commits after the rollback
with the refusal's stored answer. The control is each refusal: the seat is back on
sale, the failed attempt is on record, and the stored answer replays, keyed or not.
"""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from concerts.models import Reservation
from config.models import IdempotencyRecord
from payments.models import Payment
from tests.conftest import admitted_client, fan_holding
from tests.factories import ConcertFactory, UserFactory, make_schedule
from wallet import selectors as wallet_selectors
from wallet.models import LedgerEntry

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def sale():
    concert = ConcertFactory()
    return concert, make_schedule(concert)


def holding_fan(sale, balance):
    fan, client, (reservation,) = fan_holding(*sale, balance=balance)
    return fan, client, reservation


def pay(client, reservation_id, key=None):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    return client.post("/api/v1/payments", {"reservation_id": reservation_id}, **headers)


def statements(queries, prefix):
    return [q["sql"] for q in queries.captured_queries if q["sql"].startswith(prefix)]


def test_a_keyed_payment_and_its_answer_commit_in_one_transaction_without_a_savepoint(sale):
    fan, client, reservation = holding_fan(sale, 200_000)
    with CaptureQueriesContext(connection) as queries:
        paid = pay(client, reservation.id, key="one-tx")
    assert paid.status_code == 201, paid.content
    assert statements(queries, "SAVEPOINT") == []
    assert statements(queries, "RELEASE SAVEPOINT") == []
    record = IdempotencyRecord.objects.get(key="one-tx")
    assert (record.state, record.response_status) == ("done", 201)
    again = pay(client, reservation.id, key="one-tx")
    assert again.json() == paid.json() and again["Idempotent-Replayed"] == "true"
    assert Payment.objects.filter(status="paid").count() == 1
    assert LedgerEntry.objects.filter(kind="payment").count() == 1


@pytest.mark.parametrize("key", ["short-1", None])
def test_a_refusal_after_writes_rolls_them_back_and_keeps_its_aftermath(sale, key):
    """Insufficient balance comes after the seat's confirmation and the payment's row
    were written: both roll back, the seat goes back on sale and the failed attempt
    is kept, and a keyed answer is stored with them and replays."""
    fan, client, reservation = holding_fan(sale, 1_000)
    first = pay(client, reservation.id, key=key)
    assert first.status_code == 402, first.content
    assert first.json()["error"]["details"]["released_reservation_ids"] == [reservation.id]
    assert Reservation.objects.get(pk=reservation.pk).status == "cancelled"
    assert list(Payment.objects.values_list("status", "failure_reason")) == [
        ("failed", "insufficient_balance")
    ]
    assert wallet_selectors.wallet_balance(user_id=fan.pk) == 1_000
    assert not LedgerEntry.objects.filter(kind="payment").exists()
    if key is not None:
        record = IdempotencyRecord.objects.get(key=key)
        assert (record.state, record.response_status) == ("done", 402)
        again = pay(client, reservation.id, key=key)
        assert again.json() == first.json() and again["Idempotent-Replayed"] == "true"
        assert Payment.objects.count() == 1
    # The seat is free for the next fan at once.
    other = admitted_client(UserFactory(), sale[0])
    taken = other.post("/api/v1/reservations", {"schedule_id": sale[1].id, "seat_number": 7})
    assert taken.status_code == 201, taken.content


@pytest.mark.parametrize("key", ["late-1", None])
def test_a_lapsed_hold_is_refused_and_recorded_keyed_or_not(sale, key):
    fan, client, reservation = holding_fan(sale, 200_000)
    Reservation.objects.filter(pk=reservation.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    first = pay(client, reservation.id, key=key)
    assert first.status_code == 409 and first.json()["error"]["code"] == "hold_expired"
    assert Reservation.objects.get(pk=reservation.pk).status == "expired"
    assert Payment.objects.get().failure_reason == "hold_expired"
    assert wallet_selectors.wallet_balance(user_id=fan.pk) == 200_000
    if key is not None:
        assert IdempotencyRecord.objects.get(key=key).response_status == 409


def test_a_refusal_with_nothing_to_keep_stores_its_answer_alone(sale):
    """Already paid: refused after the lock statement, with no aftermath; the answer's
    one statement commits by itself, and replays."""
    fan, client, reservation = holding_fan(sale, 200_000)
    assert pay(client, reservation.id, key="first").status_code == 201
    with CaptureQueriesContext(connection) as queries:
        second = pay(client, reservation.id, key="second")
    assert second.status_code == 409 and second.json()["error"]["code"] == "already_paid"
    assert statements(queries, "SAVEPOINT") == []
    assert IdempotencyRecord.objects.get(key="second").response_status == 409
    assert pay(client, reservation.id, key="second").json() == second.json()
    assert Payment.objects.count() == 1
