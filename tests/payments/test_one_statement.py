"""A payment's writes ride in the statement that confirms its holds.

After the lock statement (the fan, the seats, the reservations), one statement
confirms the holds, ends the turn if no seat is left held, records a paid payment
per seat, and debits the wallet with its ledger entry (concerts'
reservations_confirm, carrying payments' and wallet's parts). Where the debit does
not go through there, the wallet's own debit runs after it in the same
transaction: for a short balance or a fan with no wallet yet, it says why and the
whole payment rolls back; for a fan who keeps the turn (another seat still held),
it debits after the turn's own lock, so the wallet's row lock stays last in the
global order (the statement debits only when it ended the turn, whose row lock it
reads first). The control is a checkout with a top-up, whose charge must come
before its debit: its payment rows and its debit are statements of their own, and
the money comes out the same.
"""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from concerts.models import Reservation
from payments import services
from payments.models import Payment
from payments.selectors import money_reconcile
from queueing.models import QueueToken
from tests.conftest import fan_holding
from wallet import selectors as wallet_selectors
from wallet.models import LedgerEntry, Wallet

pytestmark = pytest.mark.django_db

CONFIRMS = "UPDATE concerts_reservation SET status"
RECORDS = "INSERT INTO payments_payment"
DEBITS = "UPDATE wallet_wallet SET balance"
LEDGER = "INSERT INTO wallet_ledgerentry"


@pytest.fixture
def sale(concert, schedule):
    return concert, schedule


def writing(queries, *parts):
    """The statements that contain every one of `parts`."""
    return [q["sql"] for q in queries.captured_queries if all(p in q["sql"] for p in parts)]


def test_a_payment_confirms_records_and_debits_in_one_statement(sale):
    fan, client, (reservation,) = fan_holding(*sale, balance=200_000)
    with CaptureQueriesContext(connection) as queries:
        paid = client.post("/api/v1/payments", {"reservation_id": reservation.id})
    assert paid.status_code == 201, paid.json()
    assert len(writing(queries, CONFIRMS, RECORDS, DEBITS, LEDGER)) == 1
    assert len(writing(queries, RECORDS)) == len(writing(queries, DEBITS)) == 1
    payment = Payment.objects.get()
    assert (payment.status, payment.amount, payment.reservation_id) == (
        "paid", reservation.price, reservation.id,
    )  # fmt: skip
    assert paid.json()["payment_id"] == payment.pk
    entry = LedgerEntry.objects.get(kind="payment")
    assert (entry.amount, entry.payment_id, entry.reservation_id, entry.balance_after) == (
        reservation.price, payment.pk, reservation.id, 200_000 - reservation.price,
    )  # fmt: skip
    assert wallet_selectors.wallet_balance(user_id=fan.pk) == 200_000 - reservation.price
    assert Reservation.objects.get(pk=reservation.pk).status == "confirmed"
    assert QueueToken.objects.get(user=fan).end_reason == "paid"
    assert money_reconcile().ok


def test_a_checkout_of_three_seats_records_three_payments_and_debits_once_there(sale):
    fan, client, holds = fan_holding(*sale, balance=1_000_000, seats=(1, 2, 3))
    with CaptureQueriesContext(connection) as queries:
        paid = client.post(
            "/api/v1/checkouts", {"reservation_ids": [r.id for r in holds]}, format="json"
        )
    assert paid.status_code == 201, paid.json()
    assert len(writing(queries, CONFIRMS, RECORDS, DEBITS, LEDGER)) == 1
    payments = list(Payment.objects.order_by("reservation_id"))
    assert [p.reservation_id for p in payments] == [r.id for r in holds]
    first = payments[0].pk
    assert {p.checkout_id for p in payments} == {first} == {paid.json()["checkout_id"]}
    entry = LedgerEntry.objects.get(kind="payment")  # one debit, under the first payment
    assert (entry.amount, entry.payment_id, entry.reservation_id) == (
        sum(r.price for r in holds), first, None,
    )  # fmt: skip
    assert money_reconcile().ok


def test_a_fan_who_keeps_the_turn_is_debited_after_the_turn_is_locked(sale):
    fan, client, (first, second) = fan_holding(*sale, balance=500_000, seats=(1, 2))
    with CaptureQueriesContext(connection) as queries:
        paid = client.post("/api/v1/payments", {"reservation_id": first.id})
    assert paid.status_code == 201, paid.json()
    statements = [q["sql"] for q in queries.captured_queries]
    assert len(writing(queries, CONFIRMS, RECORDS)) == 1  # the payment row still rides
    # The statement's debit did not run (the turn goes on): the wallet's own did.
    (debit,) = [at for at, sql in enumerate(statements) if DEBITS in sql and CONFIRMS not in sql]
    (turn_lock,) = [
        at for at, sql in enumerate(statements)
        if "FROM queueing_queuetoken" in sql and "FOR NO KEY UPDATE" in sql
    ]  # fmt: skip
    assert turn_lock < debit
    entry = LedgerEntry.objects.get(kind="payment")
    assert (entry.payment_id, entry.reservation_id) == (paid.json()["payment_id"], first.id)
    assert QueueToken.objects.get(user=fan).status == "active"  # seat 2 is still held
    assert money_reconcile().ok


def test_the_control_a_top_up_checkout_records_and_debits_in_statements_of_their_own(sale):
    fan, _, holds = fan_holding(*sale, balance=0, seats=(1, 2))
    key = QueueToken.objects.get(user=fan, status="active").key
    with CaptureQueriesContext(connection) as queries:
        services.checkout_submit(
            user=fan, reservation_ids=[r.id for r in holds], queue_key=key,
            idempotency_key=None, now=timezone.now(), top_up=sum(r.price for r in holds),
        )  # fmt: skip
    assert writing(queries, CONFIRMS, RECORDS) == []
    assert len(writing(queries, RECORDS)) == 2  # one per seat, after the confirmation
    assert writing(queries, CONFIRMS, DEBITS) == []
    kinds = list(LedgerEntry.objects.order_by("id").values_list("kind", "amount", "reservation_id"))
    total = sum(r.price for r in holds)
    assert kinds == [("charge", total, None), ("payment", total, None)]
    assert wallet_selectors.wallet_balance(user_id=fan.pk) == 0
    assert Reservation.objects.filter(status="confirmed").count() == 2
    assert money_reconcile().ok


def test_a_short_balance_is_refused_by_the_wallet_and_nothing_of_the_statement_stays(sale):
    fan, client, (reservation,) = fan_holding(*sale, balance=10_000)
    with CaptureQueriesContext(connection) as queries:
        refused = client.post("/api/v1/payments", {"reservation_id": reservation.id})
    assert refused.status_code == 402
    body = refused.json()["error"]
    assert body["code"] == "insufficient_balance"
    assert body["details"]["balance"] == 10_000
    assert body["details"]["released_reservation_ids"] == [reservation.id]
    # The statement's debit wrote nothing; the wallet's own said why.
    assert len(writing(queries, CONFIRMS, DEBITS)) == 1
    assert len(writing(queries, DEBITS)) >= 2
    assert list(Payment.objects.values_list("status", "failure_reason")) == [
        ("failed", "insufficient_balance")
    ]
    assert not LedgerEntry.objects.filter(kind="payment").exists()
    assert wallet_selectors.wallet_balance(user_id=fan.pk) == 10_000
    assert Reservation.objects.get(pk=reservation.pk).end_reason == "payment_failed"
    assert QueueToken.objects.get(user=fan).status == "active"  # the turn goes on
    assert money_reconcile().ok


def test_a_fan_with_no_wallet_yet_is_refused_as_short_and_gets_an_empty_wallet(sale):
    fan, client, (reservation,) = fan_holding(*sale, balance=0)
    assert not Wallet.objects.filter(user=fan).exists()
    refused = client.post("/api/v1/payments", {"reservation_id": reservation.id})
    assert refused.status_code == 402
    assert refused.json()["error"]["details"]["balance"] == 0
    assert not Payment.objects.filter(status="paid").exists()
    assert Reservation.objects.get(pk=reservation.pk).status != "confirmed"
