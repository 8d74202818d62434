"""What concerts.services.reservations_lock loads is what its callers read.

The lock statement returns each reservation with its seat and its date, and not the
date's concert (the date holds `concert_id`). If a caller read more of the concert,
Django would fetch it in a query of its own, by primary key, after the lock. Every
caller is run here, and none makes that query: a payment, a checkout, a refused
payment, a fan's cancel of a hold and of a paid booking, an operator's refund and
an operator's release. The control reads the concert through a locked
reservation, and the check sees that query.
"""

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from concerts import services as concert_services
from payments import services as payment_services
from payments.models import Payment
from tests.conftest import fan_holding, token_client

pytestmark = pytest.mark.django_db

CONCERT_BY_ID = re.compile(r'FROM "concerts_concert" WHERE "concerts_concert"."id" = ')


def concert_fetches(queries) -> list[str]:
    return [q["sql"] for q in queries.captured_queries if CONCERT_BY_ID.search(q["sql"])]


@pytest.fixture
def sale(concert, schedule):
    return concert, schedule


def test_no_caller_of_the_lock_fetches_the_concert_after_it(sale):
    payer, client, (paid,) = fan_holding(*sale, balance=500_000, seats=(1,))
    buyer, basket, cart = fan_holding(*sale, balance=500_000, seats=(2, 3))
    short, short_client, (refused,) = fan_holding(*sale, balance=1_000, seats=(4,))
    canceller, _, (held,) = fan_holding(*sale, balance=0, seats=(5,))
    refunded_fan, refunded_client, (to_refund,) = fan_holding(*sale, balance=500_000, seats=(6,))
    _, _, (released,) = fan_holding(*sale, balance=0, seats=(7,))
    now = timezone.now()
    with CaptureQueriesContext(connection) as queries:
        assert client.post("/api/v1/payments", {"reservation_id": paid.id}).status_code == 201
        checkout = basket.post(
            "/api/v1/checkouts", {"reservation_ids": [r.id for r in cart]}, format="json"
        )
        assert checkout.status_code == 201
        refusal = short_client.post("/api/v1/payments", {"reservation_id": refused.id})
        assert refusal.status_code == 402
        cancel = token_client(canceller).delete(f"/api/v1/reservations/{held.id}")
        assert cancel.status_code == 200
        assert (
            refunded_client.post("/api/v1/payments", {"reservation_id": to_refund.id}).status_code
            == 201
        )
        assert token_client(refunded_fan).delete(
            f"/api/v1/reservations/{to_refund.id}"
        ).status_code == 200  # fmt: skip
        payment = Payment.objects.get(reservation=paid, status="paid")
        payment_services.payment_refund_by_operator(payment_id=payment.pk, now=now)
        assert concert_services.reservation_release_by_operator(reservation_id=released.id, now=now)
    assert concert_fetches(queries) == []


def test_the_control_reading_the_concert_of_a_locked_reservation_is_seen(sale):
    fan, _, (held,) = fan_holding(*sale, balance=0, seats=(1,))
    with CaptureQueriesContext(connection) as queries:
        (locked,) = concert_services.reservations_lock(user_id=fan.pk, reservation_ids=[held.id])
        assert locked.schedule.concert.title
    assert len(concert_fetches(queries)) == 1
