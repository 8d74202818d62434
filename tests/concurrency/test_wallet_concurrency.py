"""Money under real concurrency, on PostgreSQL: no lost update, no negative balance,
no double charge. Controls switch the wallet lock off and show the damage."""

from __future__ import annotations

from collections import Counter

import pytest
from django.utils import timezone

from tests.concurrency.helpers import (
    errors,
    first_call_waits_for,
    race_width,
    run_concurrently,
    without_idempotency_constraint,
)
from tests.conftest import token_client
from tests.factories import UserFactory
from wallet import selectors, services
from wallet.exceptions import InsufficientBalance
from wallet.models import LedgerEntry, Wallet
from wallet.services import LedgerRef

pytestmark = pytest.mark.django_db(transaction=True)


def seed_wallet(user, balance):
    services.wallet_charge(user_id=user.pk, amount=balance, now=timezone.now())


def ledger_sum(user) -> int:
    return sum(e.signed_amount for e in LedgerEntry.objects.filter(wallet_id=user.pk))


def move(kind, user_id):
    now = timezone.now()
    try:
        if kind == "charge":
            services.wallet_charge(user_id=user_id, amount=10_000, now=now)
        else:
            services.wallet_debit(user_id=user_id, amount=10_000, now=now, ref=LedgerRef(1, 1))
        return (kind, "ok")
    except InsufficientBalance:
        return (kind, "refused")


def test_100_charges_and_100_debits_at_once_lose_no_won():
    half = race_width(200) // 2
    fan = UserFactory()
    seed_wallet(fan, 500_000)
    calls = [("charge", fan.pk)] * half + [("debit", fan.pk)] * half
    results = run_concurrently(move, calls)
    assert errors(results) == []
    done = Counter(value for _, value in results)
    charges, debits = done[("charge", "ok")], done[("debit", "ok")]
    expected = 500_000 + 10_000 * charges - 10_000 * debits
    assert selectors.wallet_balance(user_id=fan.pk) == expected == ledger_sum(fan)
    assert charges == half  # nothing refuses a charge here


def debit_30000(user_id):
    try:
        services.wallet_debit(
            user_id=user_id, amount=30_000, now=timezone.now(), ref=LedgerRef(1, 1)
        )
        return "ok"
    except InsufficientBalance:
        return "refused"


def test_50_debits_of_30000_on_100000_exactly_3_succeed():
    fan = UserFactory()
    seed_wallet(fan, 100_000)

    results = run_concurrently(debit_30000, [(fan.pk,)] * 50)
    assert errors(results) == []
    assert Counter(v for _, v in results) == {"ok": 3, "refused": 47}
    assert selectors.wallet_balance(user_id=fan.pk) == 10_000
    assert LedgerEntry.objects.filter(wallet_id=fan.pk, kind="payment").count() == 3


def read_then_write(everyone: int):
    """The control's stand-in for the one guarded statement (UPDATE ... RETURNING
    feeding the ledger INSERT): read the balance without a lock, wait until all
    `everyone` threads have read it, check the rule on that read, write the computed
    balance back, then write the ledger entry. The wait is a barrier, not a sleep:
    without it, on a fast machine, the 50 debits once ran one after another and the
    control showed no race (3 payments). Only a thread's first read waits."""
    all_read = first_call_waits_for(everyone)

    def move_unguarded(*, user_id, kind, amount, delta, now, ref, guard="", params=()):
        wallet = Wallet.objects.filter(user_id=user_id).first()
        if wallet is None:
            return None  # no wallet yet: the service creates it and asks again
        all_read()
        if "balance >=" in guard and wallet.balance < params[0]:
            return None
        if "<=" in guard and wallet.balance + params[0] > params[1]:
            return None
        Wallet.objects.filter(pk=wallet.pk).update(balance=wallet.balance + delta)
        return LedgerEntry.objects.create(
            wallet_id=wallet.pk, kind=kind, amount=amount, balance_after=wallet.balance + delta,
            created_at=now, **(ref._asdict() if ref else {}),
        )  # fmt: skip

    return move_unguarded


def test_control_without_the_wallet_lock_updates_are_lost(monkeypatch):
    n = race_width(100)
    fan = UserFactory()
    seed_wallet(fan, 500_000)
    monkeypatch.setattr(services, "_move", read_then_write(n))
    results = run_concurrently(move, [("charge", fan.pk)] * n)
    assert errors(results) == []
    # Every charge "succeeded", but the balance no longer matches the ledger.
    assert selectors.wallet_balance(user_id=fan.pk) < 500_000 + n * 10_000 == ledger_sum(fan)


def test_control_without_the_wallet_lock_the_3_debit_limit_is_overdrawn(monkeypatch):
    fan = UserFactory()
    seed_wallet(fan, 100_000)
    monkeypatch.setattr(services, "_move", read_then_write(50))

    run_concurrently(debit_30000, [(fan.pk,)] * 50)
    # More than ₩100,000 was paid out of a ₩100,000 wallet.
    assert LedgerEntry.objects.filter(wallet_id=fan.pk, kind="payment").count() > 3


def test_control_without_the_key_constraint_one_key_charges_twice():
    with without_idempotency_constraint():
        fan = UserFactory()
        clients = [token_client(fan) for _ in range(20)]
        run_concurrently(
            lambda client: client.post(
                "/api/v1/wallet/charges", {"amount": 10_000}, HTTP_IDEMPOTENCY_KEY="same-key"
            ),
            [(c,) for c in clients],
        )
        assert LedgerEntry.objects.filter(wallet_id=fan.pk, kind="charge").count() > 1


def test_50_concurrent_charges_with_one_key_make_one_entry():
    fan = UserFactory()
    clients = [token_client(fan) for _ in range(50)]

    def post(client):
        response = client.post(
            "/api/v1/wallet/charges",
            {"amount": 10_000},
            format="json",
            HTTP_IDEMPOTENCY_KEY="same-key",
        )
        return response.status_code, response.json()

    results = run_concurrently(post, [(c,) for c in clients])
    assert errors(results) == []
    answers = [value for _, value in results]
    created = [body for status, body in answers if status == 201]
    in_use = [body for status, body in answers if status == 409]
    assert len(created) + len(in_use) == 50
    assert created and all(body == created[0] for body in created)
    assert all(body["error"]["code"] == "idempotency_key_in_use" for body in in_use)
    assert LedgerEntry.objects.filter(wallet_id=fan.pk).count() == 1
    retry = post(clients[0])
    assert retry == (201, created[0])
    assert selectors.wallet_balance(user_id=fan.pk) == 10_000
