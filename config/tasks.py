"""Beat jobs for cross-cutting glue."""

from celery import shared_task
from django.utils import timezone

from config import outbox
from config.idempotency import purge_expired


@shared_task(name="config.purge_idempotency_records")
def purge_idempotency_records() -> int:
    return purge_expired(now=timezone.now())


@shared_task(name="config.deliver_pending_forgets")
def deliver_pending_forgets() -> int:
    """Every kind of cache invalidation kept in PostgreSQL (config.outbox)."""
    return outbox.deliver()
