"""Writes for wallets. Every balance change happens under the wallet row lock and
writes a ledger entry in the same transaction."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import NamedTuple

from django.conf import settings
from django.db import connection, transaction

from config import rawsql
from config.idempotency import Answer, fingerprint, run_once
from wallet.exceptions import BalanceLimitExceeded, InsufficientBalance, InvalidAmount
from wallet.models import LedgerEntry, Wallet
from wallet.serializers import charge_body

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


Sql = tuple[str, list]  # a piece of SQL and its parameters, in order


def _move_sql(
    *, user_id: int, kind: str, amount: Sql, delta: Sql, now: datetime, ref: tuple[Sql, Sql],
    guard: Sql,
) -> tuple[Sql, Sql]:  # fmt: skip
    """A balance change's two steps, written once: the guarded UPDATE (... RETURNING
    the wallet's id and new balance) and the ledger entry's INSERT ... SELECT, which
    reads the UPDATE's rows as `moved` (its caller adds `FROM ...`). `amount`, `delta`,
    `ref` (the payment's and the reservation's id) and `guard` are SQL with their
    parameters: a parameter each in `_move`, expressions over the caller's statement
    in wallet_debit_part. Each step comes with its parameters, in order."""
    update = (
        f"UPDATE {Wallet._meta.db_table} SET balance = balance + {delta[0]}, updated_at = %s"
        f" WHERE user_id = %s {guard[0]} RETURNING {Wallet._meta.pk.column}, balance",
        [*delta[1], now, user_id, *guard[1]],
    )
    insert = (
        f"INSERT INTO {LedgerEntry._meta.db_table}"
        f" (wallet_id, kind, amount, balance_after, created_at, payment_id, reservation_id)"
        f" SELECT {Wallet._meta.pk.column}, %s, {amount[0]}, balance, %s, {ref[0][0]},"
        f" {ref[1][0]}",
        [kind, *amount[1], now, *ref[0][1], *ref[1][1]],
    )
    return update, insert


def _move(
    *,
    user_id: int,
    kind: str,
    amount: int,
    delta: int,
    now: datetime,
    ref: LedgerRef | None,
    guard: str = "",
    params: tuple = (),
) -> LedgerEntry | None:
    """Add `delta` to the fan's balance where `guard` (SQL on the row) holds, and write
    its ledger entry, in one statement: `UPDATE ... RETURNING` feeding the `INSERT`.
    The UPDATE takes the row lock and re-reads the latest balance under it. Outside
    a transaction the statement commits by itself, so the row lock lasts for the
    statement and its commit only, with no round trip or Python in between (the
    hot-wallet case); inside one (a payment) it lasts until that transaction ends.
    None: the guard refused or there is no wallet, and nothing was written."""
    refs = ref._asdict() if ref else {"payment_id": None, "reservation_id": None}
    update, insert = _move_sql(
        user_id=user_id, kind=kind, amount=("%s", [amount]), delta=("%s", [delta]), now=now,
        ref=(("%s", [refs["payment_id"]]), ("%s", [refs["reservation_id"]])),
        guard=(guard, list(params)),
    )  # fmt: skip
    if connection.vendor != "postgresql":  # make run's embedded SQLite: two statements
        return _move_in_two(update, kind=kind, amount=amount, now=now, refs=refs)
    with rawsql.cursor() as cursor:
        cursor.execute(
            f"WITH moved AS ({update[0]}) {insert[0]} FROM moved"
            f" RETURNING id, wallet_id, balance_after",
            [*update[1], *insert[1]],
        )
        row = cursor.fetchone()
    return None if row is None else _entry(row, kind=kind, amount=amount, now=now, refs=refs)


def _move_in_two(
    update: Sql, *, kind: str, amount: int, now: datetime, refs: dict
) -> LedgerEntry | None:
    """_move on make run's embedded SQLite, which has no UPDATE in a WITH: the UPDATE,
    then the ledger entry's INSERT, in a transaction."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(update[0], rawsql.params(update[1]))
        moved = cursor.fetchone()
        if moved is None:
            return None
        cursor.execute(
            f"INSERT INTO {LedgerEntry._meta.db_table}"
            f" (wallet_id, kind, amount, balance_after, created_at, payment_id, reservation_id)"
            f" VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
            rawsql.params([moved[0], kind, amount, moved[1], now, *refs.values()]),
        )
        row = (cursor.fetchone()[0], *moved)
    return _entry(row, kind=kind, amount=amount, now=now, refs=refs)


def _entry(row: tuple, *, kind: str, amount: int, now: datetime, refs: dict) -> LedgerEntry:
    """The ledger entry a change wrote, from its (id, wallet_id, balance_after)."""
    entry = LedgerEntry(
        id=row[0], wallet_id=row[1], kind=kind, amount=amount, balance_after=row[2],
        created_at=now, **refs,
    )  # fmt: skip
    entry._state.adding = False
    entry._state.db = "default"
    return entry


def wallet_debit_part(
    *, user_id: int, amount: str, now: datetime, ref: tuple[str, str], when: str
) -> rawsql.Part:
    """wallet_debit's usual case as part of a payment's statement (rawsql.Part): the
    guarded UPDATE and its ledger entry, as `_move` runs them. `amount` and `ref`
    (the payment's and the reservation's id) are SQL expressions with no parameters
    over the caller's other steps; a NULL amount debits nothing. `when`: an SQL
    condition (no parameters) over the steps whose row locks must come first: the
    UPDATE evaluates it before it locks the wallet's row, and debits only if it
    holds, so the wallet's lock stays last in the global order. It answers with
    whether it debited (a count, 1 or 0). If it did not, call wallet_debit in the
    same transaction: it debits (a fan's first wallet, or `when` did not hold) or
    says why (insufficient balance)."""
    update, insert = _move_sql(
        user_id=user_id, kind=Kind.PAYMENT, amount=(amount, []), delta=(f"-{amount}", []),
        now=now, ref=((ref[0], []), (ref[1], [])),
        guard=(f"AND ({when}) AND balance >= {amount}", []),
    )  # fmt: skip
    return rawsql.Part(
        f"debit AS ({update[0]}), debited AS ({insert[0]} FROM debit RETURNING id)",
        [*update[1], *insert[1]],
        "(SELECT count(*) FROM debited)",
    )


def wallet_charge_submit(
    *, user_id: int, amount: object, idempotency_key: str | None, now: datetime
) -> Answer:
    """Top up, the one entry point for the API and the page: the same Idempotency-Key
    with the same amount replays the first answer (a double-click charges once)."""

    def execute() -> tuple[int, dict]:
        entry = wallet_charge(user_id=user_id, amount=amount, now=now)
        return 201, charge_body(entry)

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
    """Every balance change: one guarded statement that takes the row lock, checks
    the rule, moves the balance and writes the ledger entry (see `_move`). Only a
    refusal or a fan's first top-up (no wallet yet) costs more, in a transaction of
    its own (or the caller's). A refused rule writes nothing. The CHECK constraint
    on the balance stands beneath the guard."""
    amount = _check_whole_won(amount)
    delta = -amount if kind == Kind.PAYMENT else amount
    move = dict(
        user_id=user_id, kind=kind, amount=amount, delta=delta, now=now, ref=ref,
        guard=guard[0], params=guard[1],
    )  # fmt: skip
    entry = _move(**move)
    if entry is not None:
        return entry
    with transaction.atomic():
        Wallet.objects.get_or_create(user_id=user_id)  # a fan's first top-up: no wallet yet
        entry = _move(**move)  # again: the balance may have moved since the refusal
        if entry is None:
            assert refusal is not None, "an unguarded change cannot be refused"
            balance = Wallet.objects.filter(user_id=user_id).values_list("balance", flat=True)
            raise refusal(balance.get())
        return entry
