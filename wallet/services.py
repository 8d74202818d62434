"""Writes for wallets. Every balance change happens under the wallet row lock and
writes a ledger entry in the same transaction."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db import transaction

from wallet.exceptions import BalanceLimitExceeded, InsufficientBalance, InvalidAmount
from wallet.models import LedgerEntry, Wallet

Kind = LedgerEntry.Kind


def _check_whole_won(amount: object) -> int:
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise InvalidAmount("The amount must be a whole number of won.")
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


def wallet_charge(*, user_id: int, amount: int, now: datetime) -> LedgerEntry:
    """Top up: WALLET_MIN_CHARGE..WALLET_MAX_CHARGE won, never past WALLET_MAX_BALANCE."""
    _check_whole_won(amount)
    if amount < settings.WALLET_MIN_CHARGE:
        raise InvalidAmount(f"The smallest top-up is ₩{settings.WALLET_MIN_CHARGE:,}.")
    if amount > settings.WALLET_MAX_CHARGE:
        raise InvalidAmount(f"The largest top-up is ₩{settings.WALLET_MAX_CHARGE:,}.")
    with transaction.atomic():
        wallet = _lock_wallet(user_id=user_id)
        if wallet.balance + amount > settings.WALLET_MAX_BALANCE:
            raise BalanceLimitExceeded(
                f"A wallet may hold at most ₩{settings.WALLET_MAX_BALANCE:,}; "
                f"you can add up to ₩{settings.WALLET_MAX_BALANCE - wallet.balance:,} now.",
                details={"balance": wallet.balance, "max_balance": settings.WALLET_MAX_BALANCE},
            )
        return _apply(wallet, kind=Kind.CHARGE, amount=amount, now=now)


def wallet_debit(
    *,
    user_id: int,
    amount: int,
    now: datetime,
    payment_id: int | None = None,
    reservation_id: int | None = None,
) -> LedgerEntry:
    """Pay from the wallet. Raises InsufficientBalance, writing nothing, if it falls short.

    Call inside the caller's transaction when the debit must commit with other
    writes (payments); the wallet row stays locked until that transaction ends.
    """
    _check_whole_won(amount)
    with transaction.atomic():
        wallet = _lock_wallet(user_id=user_id)
        if wallet.balance < amount:
            raise InsufficientBalance(
                f"Your balance is ₩{wallet.balance:,}, short of ₩{amount:,}.",
                details={"balance": wallet.balance, "amount": amount},
            )
        return _apply(
            wallet,
            kind=Kind.PAYMENT,
            amount=amount,
            now=now,
            payment_id=payment_id,
            reservation_id=reservation_id,
        )


def wallet_refund(
    *,
    user_id: int,
    amount: int,
    now: datetime,
    payment_id: int | None = None,
    reservation_id: int | None = None,
) -> LedgerEntry:
    """Give money back (a cancelled booking). Not capped by WALLET_MAX_BALANCE: it was the fan's."""
    _check_whole_won(amount)
    with transaction.atomic():
        wallet = _lock_wallet(user_id=user_id)
        return _apply(
            wallet,
            kind=Kind.REFUND,
            amount=amount,
            now=now,
            payment_id=payment_id,
            reservation_id=reservation_id,
        )
