"""Reads for wallets: balance, ledger, reconciliation."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Case, F, IntegerField, OuterRef, QuerySet, Subquery, Sum, When
from django.db.models.functions import Coalesce

from wallet.exceptions import LedgerEntryNotFound
from wallet.models import LedgerEntry, Wallet

Kind = LedgerEntry.Kind


def wallet_balance(*, user_id: int) -> int:
    """The fan's balance; a fan who never charged has 0 (no wallet row is created by reading)."""
    return Wallet.objects.filter(user_id=user_id).values_list("balance", flat=True).first() or 0


def ledger_for(*, user_id: int) -> QuerySet[LedgerEntry]:
    return LedgerEntry.objects.filter(wallet_id=user_id).order_by("-id")


def ledger_entry_get_for(*, user_id: int, entry_id: int) -> LedgerEntry:
    entry = ledger_for(user_id=user_id).filter(pk=entry_id).first()
    if entry is None:
        raise LedgerEntryNotFound()
    return entry


def signed_amount_expression():
    return Case(
        When(kind=Kind.PAYMENT, then=-F("amount")),
        default=F("amount"),
        output_field=IntegerField(),
    )


@dataclass(frozen=True)
class Mismatch:
    user_id: int
    username: str
    balance: int
    ledger_sum: int


def wallet_mismatches(*, user_ids: list[int] | None = None) -> list[Mismatch]:
    """Wallets whose balance differs from the sum of their ledger (one query)."""
    ledger_sum = (
        LedgerEntry.objects.filter(wallet=OuterRef("pk"))
        .order_by()
        .values("wallet")
        .annotate(total=Sum(signed_amount_expression()))
        .values("total")
    )
    wallets = Wallet.objects.annotate(total=Coalesce(Subquery(ledger_sum), 0)).exclude(
        balance=F("total")
    )
    if user_ids is not None:
        wallets = wallets.filter(pk__in=user_ids)
    return [
        Mismatch(w.user_id, w.user.get_username(), w.balance, w.total)
        for w in wallets.select_related("user").order_by("pk")
    ]
