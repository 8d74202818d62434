from django.conf import settings
from django.db import models


class IdempotencyRecord(models.Model):
    """One (fan, scope, Idempotency-Key): the request's fingerprint and its first answer."""

    class State(models.TextChoices):
        IN_FLIGHT = "in_flight"
        DONE = "done"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    scope = models.CharField(max_length=50)
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64)
    state = models.CharField(max_length=10, choices=State.choices, default=State.IN_FLIGHT)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True)
    started_at = models.DateTimeField()
    expires_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user", "scope", "key"], name="idempotency_one_per_fan_scope_key"
            )
        ]
        indexes = [models.Index(fields=["expires_at"], name="idempotency_expiry")]

    def __str__(self) -> str:
        return f"{self.scope}:{self.key} ({self.state})"


class PendingForget(models.Model):
    """A cache invalidation that could not reach Redis from the process that made it
    (config.outbox): kept here, in the database that changed the data, until beat's
    `config.deliver_pending_forgets` delivers it. `kind` names its owner: "auth" (an
    API token's entry, config.auth; the key is a hash of the token, never the
    token) or "seats" (a date's seat map, concerts.seatcache; the key is its id)."""

    kind = models.CharField(max_length=20, default="auth")
    cache_key = models.CharField(max_length=100)
    created_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.kind} {self.cache_key} ({self.created_at:%Y-%m-%d %H:%M:%S})"


class OperatorAction(models.Model):
    """The audit log: one row per operator action, written by the service that carries
    it out, in the same transaction. Append-only; read-only in the admin."""

    operator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    operator_name = models.CharField(max_length=150, help_text="As it was at the time.")
    action = models.CharField(max_length=50)
    concert_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["created_at"], name="operator_action_time")]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.operator_name}: {self.action}"
