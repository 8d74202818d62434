"""Load a realistic demo: concerts, dates with 50 seats each, and fan accounts.

Running it again changes nothing: concerts are found by slug, and users by name.
"""

from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone
from rest_framework.authtoken.models import Token

from concerts import services
from concerts.models import Concert

DEMO_CONCERTS = [
    {
        "slug": "iu-hereh-seoul",
        "title": "H.E.R. World Tour",
        "artist": "IU",
        "venue": "KSPO Dome, Seoul",
        "description": "The encore run of the world tour, with a full live band.",
        "price": 154_000,
        "days": [7, 8, 9],
    },
    {
        "slug": "seventeen-follow-incheon",
        "title": "FOLLOW Again",
        "artist": "SEVENTEEN",
        "venue": "Inspire Arena, Incheon",
        "description": "Thirteen members, three hours, one arena.",
        "price": 165_000,
        "days": [14, 15],
    },
    {
        "slug": "jazz-night-busan",
        "title": "Jazz by the Sea",
        "artist": "Busan Jazz Collective",
        "venue": "BEXCO Auditorium, Busan",
        "description": "An evening of standards and new work by the harbour.",
        "price": 55_000,
        "days": [3, 10, 17, 24],
    },
]

DEMO_FANS = [("fan1", "concert-fan-1"), ("fan2", "concert-fan-2"), ("fan3", "concert-fan-3")]
DEMO_OPERATOR = ("operator", "operator-demo-1")


class Command(BaseCommand):
    help = "Load demo concerts, dates, seats and accounts. Safe to run more than once."

    def handle(self, *args, **options):
        now = timezone.now().replace(minute=0, second=0, microsecond=0)
        created_concerts = 0
        with transaction.atomic():
            for spec in DEMO_CONCERTS:
                if Concert.objects.filter(slug=spec["slug"]).exists():
                    continue
                concert = services.concert_create(
                    title=spec["title"],
                    artist=spec["artist"],
                    venue=spec["venue"],
                    description=spec["description"],
                    slug=spec["slug"],
                )
                for day in spec["days"]:
                    starts_at = (now + timedelta(days=day)).replace(hour=10)  # 19:00 KST
                    services.schedule_create(
                        concert=concert,
                        starts_at=starts_at,
                        booking_opens_at=now - timedelta(days=1),
                        booking_closes_at=starts_at - timedelta(hours=2),
                        seat_price=spec["price"],
                    )
                created_concerts += 1

            User = get_user_model()
            for username, password in DEMO_FANS:
                user, made = User.objects.get_or_create(username=username)
                if made:
                    user.set_password(password)
                    user.save(update_fields=["password"])
                Token.objects.get_or_create(user=user)
            operator, made = User.objects.get_or_create(
                username=DEMO_OPERATOR[0], defaults={"is_staff": True, "is_superuser": True}
            )
            if made:
                operator.set_password(DEMO_OPERATOR[1])
                operator.save(update_fields=["password"])

        self.stdout.write(
            f"Demo data ready ({created_concerts} new concert(s), "
            f"{Concert.objects.count()} in all)."
        )
        self.stdout.write("Fan accounts (username / password):")
        for username, password in DEMO_FANS:
            self.stdout.write(f"  {username} / {password}")
        self.stdout.write(f"Operator for /admin/: {DEMO_OPERATOR[0]} / {DEMO_OPERATOR[1]}")
