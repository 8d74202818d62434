import re
import secrets
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.db.models import Q

# Tokens are counted in buckets of this many consecutive ids, so a fan's exact
# position is one SUM over bucket rows plus one COUNT inside a single bucket,
# whatever the length of the line (see docs/waiting-room.md).
BUCKET_SIZE = 1024
# Each bucket's count is split over this many rows (by token id), so fans lining
# up at the same moment update different rows instead of queueing on one.
BUCKET_STRIPES = 4


def new_token_key() -> str:
    return secrets.token_urlsafe(32)


def is_token_key(value: object) -> bool:
    """Could this be a token's secret? (URL-safe base64, as new_token_key makes.) Anything
    else is refused before it reaches the cache or the database."""
    return isinstance(value, str) and bool(TOKEN_KEY_PATTERN.fullmatch(value))


TOKEN_KEY_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")


class WaitingRoom(models.Model):
    """Per-concert admission settings, and the row that serialises admission runs."""

    concert = models.OneToOneField(
        "concerts.Concert", on_delete=models.CASCADE, primary_key=True, related_name="waiting_room"
    )
    max_active = models.PositiveIntegerField(
        null=True, blank=True, help_text="Admitted fans at once. Empty: QUEUE_MAX_ACTIVE."
    )
    admission_paused = models.BooleanField(default=False)
    # A scheduled sale (empty: first come, first served from the moment the concert
    # exists). Fans who line up in the pre-queue window before the start get no place
    # until the start; then one job gives the whole pre-queue a uniformly random order,
    # ahead of everyone who lines up after the start (see docs/waiting-room.md).
    sale_starts_at = models.DateTimeField(
        null=True, blank=True, help_text="The on-sale time. Empty: the line is open now."
    )
    pre_queue_minutes = models.PositiveIntegerField(
        default=0,
        help_text="How long before the on-sale time fans may join the pre-queue (0: none; "
        "lining up opens at the on-sale time).",
    )
    # The shuffle's audit record, written once by queue_sale_start.
    sale_started_at = models.DateTimeField(null=True, blank=True, editable=False)
    shuffle_seed = models.CharField(max_length=64, blank=True, editable=False)
    pre_queue_size = models.PositiveIntegerField(default=0, editable=False)
    last_admitted_at = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="The stamp of the latest admission run: stamps never go back, so "
        "admitted_at follows admission order even when runs' clocks disagree.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"Waiting room of {self.concert}"

    @property
    def capacity(self) -> int:
        return self.capacity_of(self.max_active)

    @staticmethod
    def capacity_of(max_active: int | None) -> int:
        """A room's capacity from its max_active (None: the site's QUEUE_MAX_ACTIVE)."""
        return settings.QUEUE_MAX_ACTIVE if max_active is None else max_active

    @property
    def pre_queue_opens_at(self):
        if self.sale_starts_at is None:
            return None
        return self.sale_starts_at - timedelta(minutes=self.pre_queue_minutes)


class QueueToken(models.Model):
    class Status(models.TextChoices):
        PRE_QUEUE = "pre_queue"  # lined up before a scheduled sale: no place until it starts
        WAITING = "waiting"
        ACTIVE = "active"
        EXPIRED = "expired"  # time ran out: the turn lapsed, or the fan stopped polling
        LEFT = "left"  # the fan left the line or gave up the turn
        ENDED = "ended"  # the turn was used up (a payment) or ended by an operator

    LIVE_STATUSES = (Status.PRE_QUEUE, Status.WAITING, Status.ACTIVE)

    # The primary key comes from a database sequence: it is the FIFO order, exact
    # across every web process, with no reliance on wall-clock time.
    id = models.BigAutoField(primary_key=True)
    key = models.CharField(max_length=64, unique=True, default=new_token_key, editable=False)
    concert = models.ForeignKey(
        "concerts.Concert", on_delete=models.CASCADE, related_name="queue_tokens"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="queue_tokens"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.WAITING)
    created_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    admitted_at = models.DateTimeField(null=True, blank=True)
    active_until = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=20, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["concert", "user"],
                condition=Q(status__in=["pre_queue", "waiting", "active"]),
                name="queue_one_live_token_per_fan",
            ),
            models.CheckConstraint(
                condition=~Q(status="active") | Q(active_until__isnull=False),
                name="queue_active_has_deadline",
            ),
        ]
        indexes = [
            models.Index(
                fields=["concert", "id"],
                condition=Q(status="waiting"),
                name="queue_waiting_order",
            ),
            models.Index(
                fields=["concert"], condition=Q(status="pre_queue"), name="queue_pre_queue"
            ),
            models.Index(
                fields=["concert", "active_until"],
                condition=Q(status="active"),
                name="queue_active_deadline",
            ),
            models.Index(fields=["concert", "admitted_at"], name="queue_admitted_at"),
            models.Index(
                fields=["last_seen_at"], condition=Q(status="waiting"), name="queue_waiting_seen"
            ),
        ]

    def __str__(self) -> str:
        return f"Token #{self.pk} ({self.status})"

    @property
    def bucket(self) -> int:
        return self.pk // BUCKET_SIZE

    @property
    def stripe(self) -> int:
        return self.pk % BUCKET_STRIPES


class QueueBucket(models.Model):
    """How many tokens of a concert are waiting among ids [number*1024, (number+1)*1024)
    whose id % BUCKET_STRIPES is `stripe`. A bucket's count is the sum of its stripes."""

    concert = models.ForeignKey("concerts.Concert", on_delete=models.CASCADE, related_name="+")
    number = models.BigIntegerField()
    stripe = models.PositiveSmallIntegerField(default=0)
    waiting = models.IntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["concert", "number", "stripe"], name="queue_bucket_unique"
            ),
            models.CheckConstraint(condition=Q(waiting__gte=0), name="queue_bucket_not_negative"),
        ]

    def __str__(self) -> str:
        return f"Bucket {self.number}/{self.stripe} of concert {self.concert_id}: {self.waiting}"
