"""Idempotency-Key edge cases (issue 10): scopes, stuck and expired records, crashes."""

from datetime import timedelta

import pytest
from django.utils import timezone

from config.idempotency import IN_FLIGHT_TIMEOUT, fingerprint, run_once
from config.models import IdempotencyRecord
from tests.conftest import admitted_client, hold_seat
from wallet import services as wallet_services
from wallet.models import LedgerEntry

pytestmark = pytest.mark.django_db


def charge(client, key, amount=10_000):
    return client.post("/api/v1/wallet/charges", {"amount": amount}, HTTP_IDEMPOTENCY_KEY=key)


def test_one_key_on_charges_and_on_payments_are_two_separate_requests(fan, concert, schedule):
    client = admitted_client(fan, concert)
    assert charge(client, "shared-key", 200_000).status_code == 201
    reservation = hold_seat(fan, schedule, 3)
    paid = client.post(
        "/api/v1/payments", {"reservation_id": reservation.id}, HTTP_IDEMPOTENCY_KEY="shared-key"
    )
    assert paid.status_code == 201  # not 422: scopes are separate
    assert "Idempotent-Replayed" not in paid
    assert set(IdempotencyRecord.objects.values_list("scope", flat=True)) == {
        "wallet.charge",
        "payments.pay",
    }


def stuck_record(fan, key, *, started_ago, state=IdempotencyRecord.State.IN_FLIGHT):
    now = timezone.now()
    return IdempotencyRecord.objects.create(
        user=fan,
        scope="wallet.charge",
        key=key,
        fingerprint=fingerprint("wallet.charge", {"amount": 10_000}),
        state=state,
        started_at=now - started_ago,
        expires_at=now - started_ago + timedelta(hours=24),
    )


def test_a_request_still_in_flight_is_409_with_retry_after(fan, fan_client):
    stuck_record(fan, "busy", started_ago=timedelta(seconds=5))
    response = charge(fan_client, "busy")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "idempotency_key_in_use"
    assert response["Retry-After"] == "1"
    assert not LedgerEntry.objects.exists()


def test_a_stuck_in_flight_record_is_taken_over_after_the_timeout(fan, fan_client):
    """A request that died before committing left its record in flight; nothing it did
    committed, so after IN_FLIGHT_TIMEOUT the same key may run."""
    stuck_record(fan, "stuck", started_ago=IN_FLIGHT_TIMEOUT + timedelta(seconds=1))
    response = charge(fan_client, "stuck")
    assert response.status_code == 201
    assert LedgerEntry.objects.count() == 1
    assert IdempotencyRecord.objects.get(key="stuck").state == "done"


def test_a_key_past_its_ttl_runs_again_as_a_new_request(fan, fan_client):
    first = charge(fan_client, "old-key")
    assert first.status_code == 201
    IdempotencyRecord.objects.filter(key="old-key").update(expires_at=timezone.now())
    again = charge(fan_client, "old-key", amount=20_000)  # even with another body
    assert again.status_code == 201 and "Idempotent-Replayed" not in again
    assert LedgerEntry.objects.count() == 2


def test_a_crash_mid_request_leaves_no_record_and_no_write(fan):
    def crash():
        wallet_services.wallet_charge(user_id=fan.pk, amount=10_000, now=timezone.now())
        raise RuntimeError("the process died here")

    with pytest.raises(RuntimeError):
        run_once(
            user_id=fan.pk,
            scope="wallet.charge",
            key="crash",
            print_="p",
            now=timezone.now(),
            execute=crash,
        )
    assert not IdempotencyRecord.objects.filter(key="crash").exists()
    assert not LedgerEntry.objects.exists()  # the charge rolled back with it
    answer = run_once(
        user_id=fan.pk,
        scope="wallet.charge",
        key="crash",
        print_="p",
        now=timezone.now(),
        execute=lambda: (201, {"ok": True}),
    )
    assert (answer.status, answer.replayed) == (201, False)
