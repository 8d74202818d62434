"""Beat jobs for seats: thin wrappers over services."""

from celery import shared_task
from django.utils import timezone

from concerts import services


@shared_task(name="concerts.release_expired_holds")
def release_expired_holds() -> int:
    return services.seat_holds_release_expired(now=timezone.now())
