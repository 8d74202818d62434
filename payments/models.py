from django.conf import settings
from django.db import models
from django.db.models import Q


class Payment(models.Model):
    """One attempt to pay for a held seat from the wallet.

    `paid` and `refunded` are successful payments: the database allows at most
    one per reservation. `failed` attempts are kept, with their reason, for audit.
    """

    class Status(models.TextChoices):
        PAID = "paid"
        REFUNDED = "refunded"
        FAILED = "failed"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="payments"
    )
    reservation = models.ForeignKey(
        "concerts.Reservation", on_delete=models.PROTECT, related_name="payments"
    )
    amount = models.PositiveIntegerField()
    status = models.CharField(max_length=10, choices=Status.choices)
    failure_reason = models.CharField(max_length=50, blank=True)
    # The checkout this seat was paid in: the id of its first payment (null when the
    # seat was paid alone). Seats paid together share one checkout, one wallet debit
    # (under that id) and one Idempotency-Key.
    checkout_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    created_at = models.DateTimeField()
    paid_at = models.DateTimeField(null=True, blank=True)
    refunded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["reservation"],
                condition=Q(status__in=["paid", "refunded"]),
                name="payment_one_success_per_reservation",
            ),
            models.CheckConstraint(condition=Q(amount__gt=0), name="payment_amount_positive"),
            models.CheckConstraint(
                condition=~Q(status="paid") | Q(paid_at__isnull=False),
                name="payment_paid_has_time",
            ),
        ]
        indexes = [models.Index(fields=["user", "status"], name="payment_user_status")]

    def __str__(self) -> str:
        return f"Payment #{self.pk} ({self.status}, ₩{self.amount:,})"
