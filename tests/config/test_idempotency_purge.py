from datetime import timedelta

import pytest
from django.utils import timezone

from config.models import IdempotencyRecord
from config.tasks import purge_idempotency_records

pytestmark = pytest.mark.django_db


def test_the_purge_job_deletes_only_records_past_their_ttl(fan):
    now = timezone.now()
    for key, expires in (("old", now - timedelta(seconds=1)), ("live", now + timedelta(hours=1))):
        IdempotencyRecord.objects.create(
            user=fan,
            scope="wallet.charge",
            key=key,
            fingerprint="x",
            started_at=now - timedelta(days=1),
            expires_at=expires,
        )
    assert purge_idempotency_records() == 1
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["live"]
