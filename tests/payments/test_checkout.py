"""Several seats, one checkout (issue 12): all or nothing, one debit, one key, and a
turn that lasts while the fan still holds seats."""

import pytest
from django.utils import timezone

from concerts.models import Reservation
from payments.models import Payment
from payments.selectors import money_reconcile
from queueing.models import QueueToken
from tests.conftest import admit, hold_seat, token_client
from tests.factories import make_schedule
from wallet import selectors as wallet_selectors
from wallet import services as wallet_services
from wallet.models import LedgerEntry

pytestmark = pytest.mark.django_db


@pytest.fixture
def four_holds(fan, concert, schedule):
    wallet_services.wallet_charge(user_id=fan.pk, amount=1_000_000, now=timezone.now())
    return [hold_seat(fan, schedule, n) for n in (1, 2, 3, 4)]


def pay_one(fan, concert, reservation):
    key = QueueToken.objects.get(user=fan, status="active").key
    return token_client(fan).post(
        "/api/v1/payments", {"reservation_id": reservation.id}, HTTP_X_QUEUE_TOKEN=key
    )


def test_a_fan_holding_four_seats_can_pay_for_each_of_them(fan, concert, four_holds):
    """Defect (issue 12): paying for the first of four holds ended the turn, so the
    other three could not be paid and stayed blocked until they expired."""
    for reservation in four_holds:
        response = pay_one(fan, concert, reservation)
        assert response.status_code == 201, response.json()
    assert Reservation.objects.filter(user=fan, status="confirmed").count() == 4
    token = QueueToken.objects.get(user=fan)
    assert (token.status, token.end_reason) == ("ended", "paid")  # ended with the last seat


def checkout(fan, concert, reservations, key="co-1"):
    queue_key = QueueToken.objects.get(user=fan, concert=concert, status="active").key
    return token_client(fan).post(
        "/api/v1/checkouts",
        {"reservation_ids": [r.id for r in reservations]},
        format="json",
        HTTP_X_QUEUE_TOKEN=queue_key,
        HTTP_IDEMPOTENCY_KEY=key,
    )


def test_three_seats_in_one_checkout_are_one_debit_and_three_tickets(fan, concert, four_holds):
    response = checkout(fan, concert, four_holds[:3])
    assert response.status_code == 201
    body = response.json()
    assert body["amount"] == 300_000 and len(body["payments"]) == 3
    assert response["Location"] == f"/api/v1/checkouts/{body['checkout_id']}"
    debit = LedgerEntry.objects.get(kind="payment")  # exactly one
    assert (debit.amount, debit.payment_id) == (300_000, body["checkout_id"])
    assert {t["seat_number"] for t in (p["ticket"] for p in body["payments"])} == {1, 2, 3}
    assert wallet_selectors.wallet_balance(user_id=fan.pk) == 700_000
    assert QueueToken.objects.get(user=fan).status == "active"  # seat 4 is still held
    assert money_reconcile().ok
    again = checkout(fan, concert, four_holds[:3])
    assert again.status_code == 201 and again["Idempotent-Replayed"] == "true"
    assert LedgerEntry.objects.filter(kind="payment").count() == 1


def test_checking_out_the_whole_cart_ends_the_turn(fan, concert, four_holds):
    assert checkout(fan, concert, four_holds).status_code == 201
    assert QueueToken.objects.get(user=fan).status == "ended"


def test_a_short_checkout_charges_nothing_and_says_the_seats_were_released(fan, concert, schedule):
    wallet_services.wallet_charge(user_id=fan.pk, amount=150_000, now=timezone.now())
    holds = [hold_seat(fan, schedule, n) for n in (5, 6)]
    response = checkout(fan, concert, holds)
    assert response.status_code == 402
    error = response.json()["error"]
    assert "released" in error["message"]
    assert sorted(error["details"]["released_reservation_ids"]) == sorted(h.id for h in holds)
    assert not LedgerEntry.objects.filter(kind="payment").exists()
    assert set(Payment.objects.values_list("status", flat=True)) == {"failed"}
    assert not Reservation.objects.filter(status="held").exists()


def test_the_single_seat_402_also_says_the_seat_was_released(fan, concert, schedule):
    """Defect (issue 12): the API's 402 did not say the hold had been released."""
    admit(fan, concert.id)
    reservation = hold_seat(fan, schedule, 7)
    response = pay_one(fan, concert, reservation)
    assert response.status_code == 402
    assert "released" in response.json()["error"]["message"]
    assert response.json()["error"]["details"]["released_reservation_ids"] == [reservation.id]


def test_top_up_and_pay_in_one_step_never_loses_the_seats(fan, concert, schedule):
    from payments import services

    holds = [hold_seat(fan, schedule, n) for n in (8, 9)]
    answer = services.checkout_submit(
        user=fan,
        reservation_ids=[h.id for h in holds],
        queue_key=QueueToken.objects.get(user=fan).key,
        idempotency_key="k",
        now=timezone.now(),
        top_up=200_000,
    )
    assert answer.status == 201
    kinds = list(LedgerEntry.objects.order_by("id").values_list("kind", "amount"))
    assert kinds == [("charge", 200_000), ("payment", 200_000)]
    assert wallet_selectors.wallet_balance(user_id=fan.pk) == 0


def test_seats_of_two_concerts_cannot_share_a_checkout(fan, concert, schedule):
    from tests.factories import ConcertFactory

    other = ConcertFactory()
    mine = hold_seat(fan, schedule, 10)
    theirs = hold_seat(fan, make_schedule(other), 10)
    response = checkout(fan, concert, [mine, theirs])
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "checkout_invalid"
    assert Reservation.objects.filter(status="held").count() == 2  # nothing changed


def test_a_refunded_seat_leaves_the_checkout_partly_refunded(fan, concert, four_holds):
    body = checkout(fan, concert, four_holds[:2]).json()
    token_client(fan).delete(f"/api/v1/reservations/{four_holds[0].id}")
    detail = token_client(fan).get(f"/api/v1/checkouts/{body['checkout_id']}").json()
    assert detail["status"] == "partly_refunded"
    assert money_reconcile().ok
