from django.db import models
from django.db.models import F, Q

SEATS_PER_SCHEDULE = 50


class Concert(models.Model):
    title = models.CharField(max_length=200)
    slug = models.SlugField(max_length=200, unique=True)
    artist = models.CharField(max_length=200)
    venue = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["title", "id"]

    def __str__(self) -> str:
        return f"{self.title} ({self.artist})"


class Schedule(models.Model):
    """One performance date of a concert, with its booking window."""

    concert = models.ForeignKey(Concert, on_delete=models.CASCADE, related_name="schedules")
    starts_at = models.DateTimeField()
    booking_opens_at = models.DateTimeField()
    booking_closes_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["starts_at", "id"]
        indexes = [models.Index(fields=["concert", "starts_at"], name="schedule_concert_starts")]
        constraints = [
            models.CheckConstraint(
                condition=Q(booking_opens_at__lt=F("booking_closes_at")),
                name="schedule_booking_opens_before_close",
            ),
            models.CheckConstraint(
                condition=Q(booking_closes_at__lte=F("starts_at")),
                name="schedule_booking_closes_by_start",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.concert.title} @ {self.starts_at:%Y-%m-%d %H:%M}"

    def is_open_for_booking(self, *, now) -> bool:
        return self.booking_opens_at <= now < self.booking_closes_at


class Seat(models.Model):
    schedule = models.ForeignKey(Schedule, on_delete=models.CASCADE, related_name="seats")
    number = models.PositiveSmallIntegerField()
    price = models.PositiveIntegerField(help_text="Price in won (KRW).")

    class Meta:
        ordering = ["schedule_id", "number"]
        constraints = [
            models.UniqueConstraint(fields=["schedule", "number"], name="seat_unique_number"),
            models.CheckConstraint(
                condition=Q(number__gte=1) & Q(number__lte=SEATS_PER_SCHEDULE),
                name="seat_number_1_to_50",
            ),
            models.CheckConstraint(condition=Q(price__gt=0), name="seat_price_positive"),
        ]

    def __str__(self) -> str:
        return f"Seat {self.number}"
