"""Reads for the catalogue."""

from __future__ import annotations

from django.db.models import Prefetch, QuerySet

from concerts.exceptions import ConcertNotFound
from concerts.models import Concert, Schedule


def concert_list() -> QuerySet[Concert]:
    return Concert.objects.order_by("title", "id")


def concert_get_with_schedules(*, concert_id: int) -> Concert:
    schedules = Schedule.objects.order_by("starts_at", "id")
    try:
        return Concert.objects.prefetch_related(Prefetch("schedules", queryset=schedules)).get(
            pk=concert_id
        )
    except Concert.DoesNotExist:
        raise ConcertNotFound() from None
