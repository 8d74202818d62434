from django.conf import settings
from django.db import models
from django.db.models import Q


class Wallet(models.Model):
    """A fan's prepaid balance in won. Changed only by wallet services, with a ledger entry."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, primary_key=True, related_name="wallet"
    )
    balance = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(balance__gte=0), name="wallet_balance_not_negative")
        ]

    def __str__(self) -> str:
        return f"Wallet of {self.user} (₩{self.balance:,})"


class LedgerEntry(models.Model):
    """One change to a wallet. Append-only: a database trigger refuses UPDATE and DELETE."""

    class Kind(models.TextChoices):
        CHARGE = "charge"
        PAYMENT = "payment"
        REFUND = "refund"

    wallet = models.ForeignKey(Wallet, on_delete=models.PROTECT, related_name="entries")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    amount = models.BigIntegerField()
    balance_after = models.BigIntegerField()
    created_at = models.DateTimeField()
    # Optional references, by id: wallet imports no other app.
    payment_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    reservation_id = models.BigIntegerField(null=True, blank=True, db_index=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="ledger_amount_positive"),
            models.CheckConstraint(
                condition=Q(balance_after__gte=0), name="ledger_balance_after_not_negative"
            ),
        ]
        indexes = [models.Index(fields=["wallet", "-id"], name="ledger_wallet_newest")]
        verbose_name_plural = "ledger entries"

    def __str__(self) -> str:
        return f"{self.kind} ₩{self.amount:,}"

    @property
    def signed_amount(self) -> int:
        return -self.amount if self.kind == self.Kind.PAYMENT else self.amount
