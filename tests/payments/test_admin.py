"""Operators' payment screens (issue 10): refund and money reconciliation really work."""

import pytest
from django.utils import timezone

from payments.models import Payment
from tests.conftest import admitted_client, hold_seat
from tests.factories import UserFactory
from wallet import selectors as wallet_selectors
from wallet import services as wallet_services
from wallet.models import LedgerEntry, Wallet

pytestmark = pytest.mark.django_db


def messages_of(response):
    return [str(m) for m in response.context["messages"]]


@pytest.fixture
def paid_and_failed(fan, concert, schedule):
    client = admitted_client(fan, concert)
    wallet_services.wallet_charge(user_id=fan.pk, amount=100_000, now=timezone.now())
    paid = client.post("/api/v1/payments", {"reservation_id": hold_seat(fan, schedule, 1).id})
    assert paid.status_code == 201
    poor = UserFactory()
    refused = admitted_client(poor, concert).post(
        "/api/v1/payments", {"reservation_id": hold_seat(poor, schedule, 2).id}
    )
    assert refused.status_code == 402
    return Payment.objects.get(status="paid"), Payment.objects.get(status="failed")


def test_the_refund_action_refunds_a_paid_booking_and_refuses_a_failed_one(
    operator_client, paid_and_failed, fan
):
    paid, failed = paid_and_failed
    response = operator_client.post(
        "/admin/payments/payment/",
        {"action": "refund", "_selected_action": [paid.pk, failed.pk]},
        follow=True,
    )
    assert sorted(messages_of(response)) == sorted(
        [
            f"Payment {paid.pk}: refunded ₩{paid.amount:,}.",
            f"Payment {failed.pk}: Only a paid payment can be refunded.",
        ]
    )
    assert Payment.objects.get(pk=paid.pk).status == "refunded"
    assert Payment.objects.get(pk=failed.pk).status == "failed"
    assert wallet_selectors.wallet_balance(user_id=fan.pk) == 100_000
    assert LedgerEntry.objects.filter(kind="refund").count() == 1


def test_the_money_reconciliation_action_reports_a_match_and_a_mismatch(
    operator_client, paid_and_failed, fan
):
    paid, _ = paid_and_failed

    def reconcile():
        response = operator_client.post(
            "/admin/payments/payment/",
            {"action": "reconcile_money", "_selected_action": [paid.pk]},
            follow=True,
        )
        return messages_of(response)

    assert reconcile() == [
        "Money reconciles: charges ₩100,000 = balances ₩0 + payments ₩100,000 - refunds ₩0."
    ]
    Wallet.objects.filter(pk=fan.pk).update(balance=5)
    problems = reconcile()
    assert problems and all(p.startswith("MISMATCH") for p in problems)
    assert any(f"wallet of {fan.username}" in p for p in problems)
