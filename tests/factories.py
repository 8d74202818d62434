from datetime import timedelta

import factory
from django.contrib.auth import get_user_model
from django.utils import timezone

from concerts import services as concert_services
from concerts.models import Concert, Schedule


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"fan{n}")
    password = factory.PostGenerationMethodCall("set_password", "correct-horse-battery")

    @factory.post_generation
    def _save(obj, create, extracted, **kwargs):
        if create:
            obj.save()


class ConcertFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Concert

    title = factory.Sequence(lambda n: f"Concert {n}")
    slug = factory.Sequence(lambda n: f"concert-{n}")
    artist = "The Testers"
    venue = "Test Hall"
    description = "A test concert."

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        # Through the service, as in production: every concert comes with its waiting room.
        from concerts.services import concert_create

        return concert_create(**kwargs)


def make_schedule(
    concert: Concert | None = None,
    *,
    starts_in: timedelta = timedelta(days=7),
    opened_ago: timedelta = timedelta(days=1),
    closes_before_start: timedelta = timedelta(hours=1),
    seat_price: int = 100_000,
    now=None,
) -> Schedule:
    """A bookable schedule (through the service, so it has its 50 seats)."""
    now = now or timezone.now()
    starts_at = now + starts_in
    return concert_services.schedule_create(
        concert=concert or ConcertFactory(),
        starts_at=starts_at,
        booking_opens_at=now - opened_ago,
        booking_closes_at=starts_at - closes_before_start,
        seat_price=seat_price,
    )


def lapsed_holds_on_every_seat(schedule: Schedule, *, then) -> None:
    """Every seat of the date held by a fan of its own since `then`, each hold lapsed
    five minutes later and not yet written down by the sweep (bulk, for speed)."""
    from concerts.models import Reservation

    Reservation.objects.bulk_create(
        Reservation(
            user=UserFactory(), schedule=schedule, seat=seat, status="held", price=seat.price,
            created_at=then, expires_at=then + timedelta(minutes=5),
        )
        for seat in schedule.seats.all()
    )  # fmt: skip
