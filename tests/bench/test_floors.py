"""The bench's floors (bench/baseline.py) write what their endpoints write.

A floor runs an endpoint's statements with nothing around them, and the bench
compares the endpoint with it: "the endpoint cannot be cheaper than its floor"
holds only if the floor does the endpoint's database work. So each floor and its
endpoint act on twin fans here, and the rows they leave must be the same.
"""

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIRequestFactory

from bench.baseline import LineUpFloorApi, PaymentFloorApi
from concerts.models import Reservation
from payments.models import Payment
from queueing.models import QueueBucket, QueueToken, WaitingRoom
from tests.conftest import hold_seat, token_client
from tests.factories import ConcertFactory, UserFactory, make_schedule
from wallet import services as wallet_services
from wallet.models import LedgerEntry, Wallet

pytestmark = pytest.mark.django_db
factory = APIRequestFactory()


def paying_fan(schedule, number: int):
    fan = UserFactory()
    wallet_services.wallet_charge(user_id=fan.pk, amount=200_000, now=timezone.now())
    reservation = hold_seat(fan, schedule, number)
    token = QueueToken.objects.get(user=fan, concert_id=schedule.concert_id)
    return fan, reservation, token


def floor_pay(fan, reservation, token):
    request = factory.post(
        "/bench/payment-floor",
        HTTP_X_FAN=str(fan.pk),
        HTTP_X_RESERVATION=str(reservation.pk),
        HTTP_X_QUEUE_TOKEN=token.key,
    )
    return PaymentFloorApi.as_view()(request)


def what_a_payment_left(fan, reservation) -> dict:
    r = Reservation.objects.get(pk=reservation.pk)
    token = QueueToken.objects.get(user=fan)
    payment = Payment.objects.get(reservation=r)
    entry = LedgerEntry.objects.get(wallet__user=fan, kind="payment")
    return {
        "reservation": (r.status, r.confirmed_at is not None, r.expires_at),
        "token": (token.status, token.end_reason, token.ended_at is not None),
        "payment": (payment.status, payment.amount == r.price, payment.failure_reason,
                    payment.checkout_id, payment.paid_at is not None, payment.user_id == fan.pk),
        "ledger": (entry.amount == r.price, entry.payment_id == payment.pk,
                   entry.reservation_id == r.pk, entry.balance_after),
        "balance": Wallet.objects.get(user=fan).balance,
    }  # fmt: skip


def test_the_payment_floor_writes_what_a_payment_writes():
    schedule = make_schedule(ConcertFactory())
    paid_fan, paid_hold, paid_token = paying_fan(schedule, 1)
    client = token_client(paid_fan)
    response = client.post(
        "/api/v1/payments", {"reservation_id": paid_hold.pk}, format="json",
        HTTP_X_QUEUE_TOKEN=paid_token.key,
    )  # fmt: skip
    assert response.status_code == 201, response.content
    floor_fan, floor_hold, floor_token = paying_fan(schedule, 2)
    assert floor_pay(floor_fan, floor_hold, floor_token).status_code == 201
    paid = what_a_payment_left(paid_fan, paid_hold)
    assert paid["reservation"][0] == "confirmed" and paid["token"][0] == "ended"
    assert what_a_payment_left(floor_fan, floor_hold) == paid


def test_the_payment_floor_refuses_a_lapsed_hold_and_writes_nothing():
    schedule = make_schedule(ConcertFactory())
    fan, hold, token = paying_fan(schedule, 1)
    Reservation.objects.filter(pk=hold.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert floor_pay(fan, hold, token).status_code == 409
    assert Reservation.objects.get(pk=hold.pk).status == "held"
    assert QueueToken.objects.get(pk=token.pk).status == "active"
    assert not Payment.objects.exists()
    assert Wallet.objects.get(user=fan).balance == 200_000


def test_the_line_up_floor_makes_what_a_line_up_makes():
    concert = ConcertFactory()
    WaitingRoom.objects.filter(pk=concert.pk).update(max_active=0)  # a full room
    lined = UserFactory()
    assert token_client(lined).post(f"/api/v1/concerts/{concert.pk}/queue").status_code == 201
    floored = UserFactory()
    auth = "Token " + Token.objects.create(user=floored).key
    request = factory.post(f"/bench/line-up-floor/{concert.pk}", HTTP_AUTHORIZATION=auth)
    assert LineUpFloorApi.as_view()(request, concert_id=concert.pk).status_code == 201
    first, second = QueueToken.objects.filter(concert=concert).order_by("id")
    assert (first.user, second.user) == (lined, floored)
    fields = ("status", "end_reason", "admitted_at", "active_until", "ended_at")
    assert [getattr(first, f) for f in fields] == [getattr(second, f) for f in fields]
    assert first.status == "waiting"
    waiting = sum(QueueBucket.objects.filter(concert=concert).values_list("waiting", flat=True))
    assert waiting == 2  # each counted in its place's bucket


def test_the_payment_floor_refuses_a_fan_whose_turn_ended_and_writes_nothing():
    """The floor has no gate of its own: the turn's UPDATE finding nothing is its
    refusal (409), and the transaction takes the confirmation back."""
    schedule = make_schedule(ConcertFactory())
    fan, hold, token = paying_fan(schedule, 1)
    QueueToken.objects.filter(pk=token.pk).update(status="ended")
    assert floor_pay(fan, hold, token).status_code == 409
    assert Reservation.objects.get(pk=hold.pk).status == "held"
    assert not Payment.objects.exists()
