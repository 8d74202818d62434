"""After-commit work can fail; the committed answer must stand (issue 9).

These run with real commits (transaction=True): on_commit hooks fire when the
outermost transaction, run_once's, commits, which is where the defect lived.
"""

import pytest
from django.utils import timezone

from config.models import IdempotencyRecord
from payments.models import Payment
from queueing import services as queue_services
from queueing.models import QueueToken
from tests.conftest import admitted_client, hold_seat
from tests.factories import ConcertFactory, UserFactory, make_schedule
from wallet import services as wallet_services
from wallet.models import LedgerEntry

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def break_admission(monkeypatch):
    """Call it to make every admission run raise from then on; returns the calls made."""
    calls = []

    def boom(**kwargs):
        calls.append(kwargs)
        raise RuntimeError("admission crashed after commit")

    def arm():
        monkeypatch.setattr(queue_services, "_admit_soon", boom)  # the after-commit run
        return calls

    return arm


def test_a_committed_payment_replays_201_even_when_admission_fails_after_commit(
    break_admission,
):
    concert = ConcertFactory()
    schedule = make_schedule(concert)
    fan = UserFactory()
    client = admitted_client(fan, concert)
    wallet_services.wallet_charge(user_id=fan.pk, amount=200_000, now=timezone.now())
    reservation = hold_seat(fan, schedule, 3)
    admission_fails = break_admission()
    first = client.post(
        "/api/v1/payments", {"reservation_id": reservation.id}, HTTP_IDEMPOTENCY_KEY="pay-1"
    )
    assert admission_fails, "the after-commit admission run did not happen"
    assert first.status_code == 201, first.content
    retry = client.post(
        "/api/v1/payments", {"reservation_id": reservation.id}, HTTP_IDEMPOTENCY_KEY="pay-1"
    )
    assert retry.status_code == 201, retry.content
    assert retry.json() == first.json()
    assert retry["Idempotent-Replayed"] == "true"
    assert IdempotencyRecord.objects.get(key="pay-1").state == "done"
    assert Payment.objects.filter(status="paid").count() == 1
    assert LedgerEntry.objects.filter(kind="payment").count() == 1


def test_leaving_the_line_answers_204_even_when_admission_fails_after_commit(break_admission):
    concert = ConcertFactory()
    fan = UserFactory()
    token, _ = queue_services.queue_token_issue(user=fan, concert_id=concert.id, now=timezone.now())
    client = admitted_client(fan, concert)
    admission_fails = break_admission()
    response = client.delete("/api/v1/queue", HTTP_X_QUEUE_TOKEN=token.key)
    assert response.status_code == 204
    assert admission_fails
    assert QueueToken.objects.get(pk=token.pk).status == "left"
