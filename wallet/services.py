"""Writes for wallets. Every balance change happens under the wallet row lock and
writes a ledger entry in the same transaction."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import NamedTuple

from django.conf import settings
from django.db import transaction

from config.idempotency import Answer, fingerprint, run_once
from wallet.exceptions import BalanceLimitExceeded, InsufficientBalance, InvalidAmount
from wallet.models import LedgerEntry, Wallet
from wallet.serializers import ChargeOutput

Kind = LedgerEntry.Kind


class LedgerRef(NamedTuple):
    """What a debit or refund is for, by id (wallet imports no other app)."""

    payment_id: int
    reservation_id: int | None  # None for a checkout of several seats


CHARGE_SCOPE = "wallet.charge"


def _check_whole_won(amount: object) -> int:
    """A whole number of won, as a JSON integer (not a string, float, bool or null)."""
    if amount is None:
        raise InvalidAmount("amount may not be null.")
    if isinstance(amount, bool):
        raise InvalidAmount("amount must be a number of won, not true or false.")
    if isinstance(amount, str):
        raise InvalidAmount("amount must be a JSON number, not a string.")
    if isinstance(amount, float):
        raise InvalidAmount("amount must be a whole number of won (no decimals).")
    if not isinstance(amount, int):
        raise InvalidAmount("amount must be a whole number of won.")
    if amount <= 0:
        raise InvalidAmount("The amount must be more than zero.")
    return amount


def _lock_wallet(*, user_id: int) -> Wallet:
    """The fan's wallet row, created if needed, locked for the rest of the transaction."""
    Wallet.objects.get_or_create(user_id=user_id)
    return Wallet.objects.select_for_update(no_key=True).get(user_id=user_id)


def _apply(
    wallet: Wallet,
    *,
    kind: str,
    amount: int,
    now: datetime,
    payment_id: int | None = None,
    reservation_id: int | None = None,
) -> LedgerEntry:
    wallet.balance += -amount if kind == Kind.PAYMENT else amount
    Wallet.objects.filter(pk=wallet.pk).update(balance=wallet.balance, updated_at=now)
    return LedgerEntry.objects.create(
        wallet=wallet,
        kind=kind,
        amount=amount,
        balance_after=wallet.balance,
        created_at=now,
        payment_id=payment_id,
        reservation_id=reservation_id,
    )


def wallet_charge_submit(
    *, user_id: int, amount: object, idempotency_key: str | None, now: datetime
) -> Answer:
    """Top up, the one entry point for the API and the page: the same Idempotency-Key
    with the same amount replays the first answer (a double-click charges once)."""

    def execute() -> tuple[int, dict]:
        entry = wallet_charge(user_id=user_id, amount=amount, now=now)
        return 201, ChargeOutput({"balance": entry.balance_after, "entry": entry}).data

    return run_once(
        user_id=user_id,
        scope=CHARGE_SCOPE,
        key=idempotency_key,
        print_=fingerprint(CHARGE_SCOPE, {"amount": amount}),
        now=now,
        execute=execute,
    )


def wallet_charge(*, user_id: int, amount: object, now: datetime) -> LedgerEntry:
    """Top up: WALLET_MIN_CHARGE..WALLET_MAX_CHARGE won, never past WALLET_MAX_BALANCE."""
    amount = _check_whole_won(amount)
    if amount < settings.WALLET_MIN_CHARGE:
        raise InvalidAmount(f"The smallest top-up is ₩{settings.WALLET_MIN_CHARGE:,}.")
    if amount > settings.WALLET_MAX_CHARGE:
        raise InvalidAmount(f"The largest top-up is ₩{settings.WALLET_MAX_CHARGE:,}.")

    def under_cap(wallet: Wallet) -> None:
        if wallet.balance + amount > settings.WALLET_MAX_BALANCE:
            raise BalanceLimitExceeded(
                f"A wallet may hold at most ₩{settings.WALLET_MAX_BALANCE:,}; "
                f"you can add up to ₩{settings.WALLET_MAX_BALANCE - wallet.balance:,} now.",
                details={"balance": wallet.balance, "max_balance": settings.WALLET_MAX_BALANCE},
            )

    return _locked_apply(user_id=user_id, kind=Kind.CHARGE, amount=amount, now=now, check=under_cap)


def wallet_debit(*, user_id: int, amount: int, now: datetime, ref: LedgerRef) -> LedgerEntry:
    """Pay from the wallet. Raises InsufficientBalance, writing nothing, if it falls short.

    Call inside the caller's transaction when the debit must commit with other
    writes (payments); the wallet row stays locked until that transaction ends.
    """

    def covers(wallet: Wallet) -> None:
        if wallet.balance < amount:
            raise InsufficientBalance(
                f"Your balance is ₩{wallet.balance:,}, short of ₩{amount:,}.",
                details={"balance": wallet.balance, "amount": amount},
            )

    return _locked_apply(
        user_id=user_id, kind=Kind.PAYMENT, amount=amount, now=now, ref=ref, check=covers
    )


def wallet_refund(*, user_id: int, amount: int, now: datetime, ref: LedgerRef) -> LedgerEntry:
    """Give money back (a cancelled booking). Not capped by WALLET_MAX_BALANCE: it was the fan's."""
    return _locked_apply(user_id=user_id, kind=Kind.REFUND, amount=amount, now=now, ref=ref)


def _locked_apply(
    *,
    user_id: int,
    kind: str,
    amount: object,
    now: datetime,
    ref: LedgerRef | None = None,
    check: Callable[[Wallet], None] | None = None,
) -> LedgerEntry:
    """Every balance change: under the wallet row lock, `check` the rule, then move
    the money and write its ledger entry, all in one transaction (or the caller's)."""
    amount = _check_whole_won(amount)
    with transaction.atomic():
        wallet = _lock_wallet(user_id=user_id)
        if check is not None:
            check(wallet)
        return _apply(wallet, kind=kind, amount=amount, now=now, **(ref._asdict() if ref else {}))
