from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

SEATS_PER_SCHEDULE = 50


class Concert(models.Model):
    title = models.CharField(max_length=200)
    slug = models.SlugField(max_length=200, unique=True)
    artist = models.CharField(max_length=200)
    venue = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    hold_ttl_seconds = models.PositiveIntegerField(
        null=True, blank=True, help_text="How long a seat hold lasts. Empty: SEAT_HOLD_TTL."
    )
    max_seats_per_fan = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="Live seats per fan per date. Empty: MAX_SEATS_PER_FAN."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["title", "id"]

    def __str__(self) -> str:
        return f"{self.title} ({self.artist})"

    @property
    def hold_ttl(self) -> int:
        return self.hold_ttl_seconds or settings.SEAT_HOLD_TTL

    @property
    def seat_limit(self) -> int:
        return self.max_seats_per_fan or settings.MAX_SEATS_PER_FAN


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
        local = timezone.localtime(self.starts_at)  # operators read local time, not UTC
        return f"{self.concert.title} @ {local:%Y-%m-%d %H:%M}"

    def is_open_for_booking(self, *, now) -> bool:
        return self.booking_opens_at <= now < self.booking_closes_at and now < self.starts_at


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


class Reservation(models.Model):
    """One fan's claim on one seat: a timed hold, then (once paid) the fan's seat."""

    class Status(models.TextChoices):
        HELD = "held"
        CONFIRMED = "confirmed"
        CANCELLED = "cancelled"
        EXPIRED = "expired"

    class EndReason(models.TextChoices):
        """Why a hold ended: every way goes through concerts.services.reservation_end."""

        PAID = "paid"  # held -> confirmed: the hold ends, the booking starts
        CANCELLED = "cancelled"  # the fan let the hold go
        EXPIRED = "expired"  # its time ran out (lazily, or by the sweep)
        RELEASED = "released"  # an operator freed the seat
        PAYMENT_FAILED = "payment_failed"  # a refused payment gives the seat back
        REFUNDED = "refunded"  # a paid booking was cancelled and refunded

    LIVE_STATUSES = (Status.HELD, Status.CONFIRMED)

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="reservations"
    )
    schedule = models.ForeignKey(Schedule, on_delete=models.PROTECT, related_name="reservations")
    seat = models.ForeignKey(Seat, on_delete=models.PROTECT, related_name="reservations")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.HELD)
    price = models.PositiveIntegerField(help_text="The seat's price in won when it was held.")
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField(null=True, blank=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=20, choices=EndReason.choices, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            # Beneath the seat lock: at most one held-or-confirmed reservation per seat.
            models.UniqueConstraint(
                fields=["seat"],
                condition=Q(status__in=["held", "confirmed"]),
                name="reservation_one_live_per_seat",
            ),
            models.CheckConstraint(
                condition=~Q(status="held") | Q(expires_at__isnull=False),
                name="reservation_hold_has_expiry",
            ),
            models.CheckConstraint(condition=Q(price__gt=0), name="reservation_price_positive"),
        ]
        indexes = [
            models.Index(fields=["schedule", "user", "status"], name="reservation_fan_schedule"),
            models.Index(
                fields=["expires_at"], condition=Q(status="held"), name="reservation_hold_expiry"
            ),
            models.Index(fields=["schedule", "status"], name="reservation_schedule_status"),
        ]

    def __str__(self) -> str:
        return f"Reservation #{self.pk} ({self.status})"

    # "Is it live?" is written here once, in its two forms: SQL (live_q) and Python
    # (effective_status). A hold counts as expired the moment its time is up,
    # swept or not; a confirmed reservation is live until it is cancelled.

    @classmethod
    def live_q(cls, *, now, prefix: str = "") -> Q:
        """Reservations that block their seat at `now`: confirmed, or held and unexpired."""
        return Q(**{f"{prefix}status": cls.Status.CONFIRMED}) | Q(
            **{f"{prefix}status": cls.Status.HELD, f"{prefix}expires_at__gt": now}
        )

    def effective_status(self, *, now) -> str:
        if self.status == self.Status.HELD and self.expires_at <= now:
            return self.Status.EXPIRED
        return self.status

    def is_live(self, *, now) -> bool:
        return self.effective_status(now=now) in self.LIVE_STATUSES


class WaitlistEntry(models.Model):
    """A fan waiting for a seat of a sold-out date. When a seat frees, the first fan
    waiting is offered it: a hold in their name (`reservation`), with a turn to pay."""

    class Status(models.TextChoices):
        WAITING = "waiting"
        OFFERED = "offered"  # holding the freed seat (and keeps it once paid)
        LEFT = "left"  # the fan left the waitlist
        LAPSED = "lapsed"  # the offer ended unpaid (expired, declined or refused)

    LIVE_STATUSES = (Status.WAITING, Status.OFFERED)

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="waitlist_entries"
    )
    schedule = models.ForeignKey(Schedule, on_delete=models.CASCADE, related_name="waitlist")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.WAITING)
    created_at = models.DateTimeField()
    offered_at = models.DateTimeField(null=True, blank=True)
    reservation = models.OneToOneField(
        Reservation,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="waitlist_entry",
        help_text="The offered hold.",
    )
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        verbose_name_plural = "waitlist entries"
        constraints = [
            models.UniqueConstraint(
                fields=["user", "schedule"],
                condition=Q(status__in=["waiting", "offered"]),
                name="waitlist_one_live_entry_per_fan",
            ),
            models.CheckConstraint(
                condition=~Q(status="offered") | Q(reservation__isnull=False),
                name="waitlist_offer_has_hold",
            ),
        ]
        indexes = [
            models.Index(
                fields=["schedule", "id"],
                condition=Q(status="waiting"),
                name="waitlist_waiting_order",
            ),
        ]

    def __str__(self) -> str:
        return f"Waitlist #{self.pk} ({self.status})"
