"""Writes for wallets. Every balance change happens under the wallet row lock and
writes a ledger entry in the same transaction."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import NamedTuple

from django.conf import settings
from django.db import connection, transaction

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


def _move(
    *, user_id: int, delta: int, now: datetime, guard: str = "", params: tuple = ()
) -> tuple[int, int] | None:
    """Add `delta` to the fan's balance where `guard` (SQL on the row) holds, in one
    `UPDATE ... RETURNING`: the statement takes the row lock, re-reads the latest
    balance under it, and says (wallet id, new balance), or None when the guard
    refused or there is no wallet. The lock lasts until the transaction ends."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {Wallet._meta.db_table} SET balance = balance + %s, updated_at = %s"
            f" WHERE user_id = %s {guard} RETURNING {Wallet._meta.pk.column}, balance",
            [delta, now, user_id, *params],
        )
        return cursor.fetchone()


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
    cap = settings.WALLET_MAX_BALANCE

    def over_cap(balance: int) -> BalanceLimitExceeded:
        return BalanceLimitExceeded(
            f"A wallet may hold at most ₩{cap:,}; "
            f"you can add up to ₩{max(0, cap - balance):,} now.",
            details={"balance": balance, "max_balance": cap},
        )

    return _locked_apply(
        user_id=user_id,
        kind=Kind.CHARGE,
        amount=amount,
        now=now,
        guard=("AND balance + %s <= %s", (amount, cap)),
        refusal=over_cap,
    )


def wallet_debit(*, user_id: int, amount: int, now: datetime, ref: LedgerRef) -> LedgerEntry:
    """Pay from the wallet. Raises InsufficientBalance, writing nothing, if it falls short.

    Call inside the caller's transaction when the debit must commit with other
    writes (payments); the wallet row stays locked until that transaction ends.
    """

    def short(balance: int) -> InsufficientBalance:
        return InsufficientBalance(
            f"Your balance is ₩{balance:,}, short of ₩{amount:,}.",
            details={"balance": balance, "amount": amount},
        )

    return _locked_apply(
        user_id=user_id,
        kind=Kind.PAYMENT,
        amount=amount,
        now=now,
        ref=ref,
        guard=("AND balance >= %s", (amount,)),
        refusal=short,
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
    guard: tuple[str, tuple] = ("", ()),
    refusal: Callable[[int], Exception] | None = None,
) -> LedgerEntry:
    """Every balance change: one guarded `UPDATE ... RETURNING` (the row lock, the
    rule and the move at once), then its ledger entry, in one transaction (or the
    caller's). A refused rule writes nothing. The CHECK constraint on the balance
    stands beneath the guard."""
    amount = _check_whole_won(amount)
    delta = -amount if kind == Kind.PAYMENT else amount
    with transaction.atomic():
        moved = _move(user_id=user_id, delta=delta, now=now, guard=guard[0], params=guard[1])
        if moved is None:
            balance = Wallet.objects.filter(user_id=user_id).values_list("balance", flat=True)
            balance = balance.first()
            if balance is None:  # the fan's first top-up: create the wallet, then move
                Wallet.objects.get_or_create(user_id=user_id)
                moved = _move(
                    user_id=user_id, delta=delta, now=now, guard=guard[0], params=guard[1]
                )
                balance = 0
            if moved is None:
                assert refusal is not None, "an unguarded change cannot be refused"
                raise refusal(balance)
        wallet_id, balance_after = moved
        return LedgerEntry.objects.create(
            wallet_id=wallet_id,
            kind=kind,
            amount=amount,
            balance_after=balance_after,
            created_at=now,
            **(ref._asdict() if ref else {}),
        )
