"""Beat jobs for the waiting room: thin wrappers over services."""

from celery import shared_task
from django.utils import timezone

from queueing import services


@shared_task(name="queueing.admit_waiting")
def admit_waiting() -> int:
    return services.queue_admit_all(now=timezone.now())


@shared_task(name="queueing.rebuild_buckets")
def rebuild_buckets() -> int:
    return services.queue_buckets_rebuild()


@shared_task(name="queueing.expire_stale_tokens")
def expire_stale_tokens() -> dict[str, int]:
    return services.queue_expire_stale(now=timezone.now())


@shared_task(name="queueing.repair_mirror")
def repair_mirror() -> int | None:
    return services.queue_mirror_repair()


@shared_task(name="queueing.start_sales")
def start_sales() -> int:
    return services.queue_sales_start_due(now=timezone.now())


@shared_task(name=services.ADMIT_DUE_TASK)
def admit_due(concert_id: int) -> int:
    """Sent by a commit whose admission round found the concert busy (_admit_soon)."""
    return services.queue_admit_due(concert_id=concert_id)
