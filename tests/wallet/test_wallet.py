import io
import re

import pytest
from django.core.management import call_command
from django.db import IntegrityError, connection, transaction
from django.test import Client
from django.utils import timezone

from tests.conftest import token_client
from wallet import selectors, services
from wallet.exceptions import BalanceLimitExceeded, InsufficientBalance, InvalidAmount
from wallet.models import LedgerEntry, Wallet
from wallet.services import LedgerRef

pytestmark = pytest.mark.django_db


def charge(user, amount):
    return services.wallet_charge(user_id=user.pk, amount=amount, now=timezone.now())


# --- services ------------------------------------------------------------------


def test_charge_debit_refund_write_ledger_entries_with_running_balance(fan):
    charge(fan, 50_000)
    services.wallet_debit(user_id=fan.pk, amount=30_000, now=timezone.now(), ref=LedgerRef(7, 7))
    services.wallet_refund(user_id=fan.pk, amount=10_000, now=timezone.now(), ref=LedgerRef(7, 7))
    entries = list(LedgerEntry.objects.filter(wallet_id=fan.pk).order_by("id"))
    assert [(e.kind, e.amount, e.balance_after) for e in entries] == [
        ("charge", 50_000, 50_000),
        ("payment", 30_000, 20_000),
        ("refund", 10_000, 30_000),
    ]
    assert entries[1].payment_id == 7
    assert selectors.wallet_balance(user_id=fan.pk) == 30_000


def test_an_insufficient_debit_writes_nothing(fan):
    charge(fan, 10_000)
    with pytest.raises(InsufficientBalance):
        services.wallet_debit(
            user_id=fan.pk, amount=10_001, now=timezone.now(), ref=LedgerRef(1, 1)
        )
    assert selectors.wallet_balance(user_id=fan.pk) == 10_000
    assert LedgerEntry.objects.count() == 1


@pytest.mark.parametrize("amount", [999, 1_000_001, 0, -5])
def test_charge_outside_the_limits_is_refused(fan, amount):
    with pytest.raises(InvalidAmount):
        charge(fan, amount)
    assert not LedgerEntry.objects.exists()


def test_charge_past_the_maximum_balance_is_refused(fan, settings):
    settings.WALLET_MAX_BALANCE = 1_500_000
    charge(fan, 1_000_000)
    with pytest.raises(BalanceLimitExceeded):
        charge(fan, 500_001)
    charge(fan, 500_000)
    assert selectors.wallet_balance(user_id=fan.pk) == 1_500_000


def test_the_database_refuses_a_negative_balance(fan):
    charge(fan, 5_000)
    with pytest.raises(IntegrityError), transaction.atomic():
        Wallet.objects.filter(pk=fan.pk).update(balance=-1)


@pytest.mark.parametrize(
    "sql", ["UPDATE wallet_ledgerentry SET amount = 1", "DELETE FROM wallet_ledgerentry"]
)
def test_the_database_keeps_the_ledger_append_only(fan, sql):
    charge(fan, 5_000)
    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql)
    assert LedgerEntry.objects.get().amount == 5_000


def test_reconcile_passes_on_a_clean_database(fan, other_fan):
    charge(fan, 5_000)
    charge(other_fan, 7_000)
    out = io.StringIO()
    call_command("wallet_reconcile", stdout=out)
    assert "OK: all 2 wallet(s)" in out.getvalue()


def test_reconcile_fails_and_names_the_wallet_after_a_raw_mismatch(fan, other_fan):
    charge(fan, 5_000)
    charge(other_fan, 7_000)
    Wallet.objects.filter(pk=other_fan.pk).update(balance=9_999)
    out = io.StringIO()
    with pytest.raises(SystemExit) as exit_info:
        call_command("wallet_reconcile", stdout=out)
    assert exit_info.value.code == 1
    assert f"wallet of {other_fan.username}" in out.getvalue()
    assert fan.username + " " not in out.getvalue()


# --- API ---------------------------------------------------------------------------


def post_charge(client, body, key=None):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    return client.post("/api/v1/wallet/charges", body, format="json", **headers)


def test_wallet_starts_at_zero_in_krw(fan_client):
    assert fan_client.get("/api/v1/wallet").json() == {"balance": 0, "currency": "KRW"}


def test_charge_returns_201_with_balance_and_entry(fan_client):
    response = post_charge(fan_client, {"amount": 10_000})
    assert response.status_code == 201
    body = response.json()
    assert body["balance"] == 10_000
    assert set(body["entry"]) == {"entry_id", "kind", "amount", "balance_after", "created_at"}
    assert body["entry"]["kind"] == "charge" and body["entry"]["amount"] == 10_000
    assert fan_client.get("/api/v1/wallet").json()["balance"] == 10_000


@pytest.mark.parametrize(
    "body, why",
    [
        ({"amount": "1000"}, "string"),
        ({"amount": 1000.5}, "decimals"),
        ({"amount": True}, "true or false"),
        ({"amount": None}, "null"),
        ({}, "required"),
        ({"amount": 999}, "smallest"),
        ({"amount": 1_000_001}, "largest"),
        ({"amount": -1000}, "more than zero"),
    ],
)
def test_invalid_amounts_get_400_with_a_field_message_and_write_nothing(fan_client, body, why):
    response = post_charge(fan_client, body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_amount"
    assert why in error["details"]["amount"][0]
    assert not LedgerEntry.objects.exists() and not Wallet.objects.exists()


def test_a_non_object_body_is_invalid(fan_client):
    response = fan_client.post("/api/v1/wallet/charges", "[1]", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_amount"


def test_balance_limit_gets_409(fan_client, settings):
    settings.WALLET_MAX_BALANCE = 15_000
    post_charge(fan_client, {"amount": 10_000})
    response = post_charge(fan_client, {"amount": 10_000})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "balance_limit_exceeded"


def test_ledger_is_paginated_newest_first(fan_client):
    for amount in range(1000, 26_000, 1000):
        post_charge(fan_client, {"amount": amount})
    body = fan_client.get("/api/v1/wallet/ledger").json()
    assert body["count"] == 25
    assert [e["amount"] for e in body["results"][:3]] == [25_000, 24_000, 23_000]


def test_the_same_key_and_body_replays_the_first_answer(fan_client):
    first = post_charge(fan_client, {"amount": 10_000}, key="k-1")
    again = post_charge(fan_client, {"amount": 10_000}, key="k-1")
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert LedgerEntry.objects.count() == 1


def test_the_same_key_with_another_body_gets_422(fan_client):
    post_charge(fan_client, {"amount": 10_000}, key="k-1")
    response = post_charge(fan_client, {"amount": 20_000}, key="k-1")
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "idempotency_key_reused"
    assert LedgerEntry.objects.count() == 1


def test_keys_are_scoped_per_fan(fan_client, other_client, other_fan):
    mine = post_charge(fan_client, {"amount": 10_000}, key="shared")
    theirs = post_charge(other_client, {"amount": 10_000}, key="shared")
    assert theirs.status_code == 201
    assert theirs.json()["entry"]["entry_id"] != mine.json()["entry"]["entry_id"]
    assert selectors.wallet_balance(user_id=other_fan.pk) == 10_000


def test_an_error_answer_is_replayed_too(fan_client):
    first = post_charge(fan_client, {"amount": 5}, key="k-err")
    again = post_charge(fan_client, {"amount": 5}, key="k-err")
    assert first.status_code == again.status_code == 400
    assert again.json() == first.json()


@pytest.mark.parametrize(
    "method, path",
    [
        ("get", "/api/v1/wallet"),
        ("post", "/api/v1/wallet/charges"),
        ("get", "/api/v1/wallet/ledger"),
    ],
)
def test_wallet_endpoints_need_authentication(anon_client, method, path):
    assert getattr(anon_client, method)(path).status_code == 401


def test_no_endpoint_reveals_or_changes_another_fans_wallet(fan, other_fan, fan_client):
    charge(other_fan, 70_000)
    assert fan_client.get("/api/v1/wallet").json()["balance"] == 0
    assert fan_client.get("/api/v1/wallet/ledger").json()["count"] == 0
    post_charge(fan_client, {"amount": 1_000, "user_id": other_fan.pk})
    assert selectors.wallet_balance(user_id=other_fan.pk) == 70_000
    assert token_client(other_fan).get("/api/v1/wallet").json()["balance"] == 70_000


# --- page -------------------------------------------------------------------------


@pytest.fixture
def page_client(fan):
    client = Client()
    client.force_login(fan)
    return client


def test_wallet_page_charges_and_lists_history(page_client, fan):
    html = page_client.get("/wallet/?amount=154000&next=/cart/").content.decode()
    assert "₩0" in html
    quick = re.findall(r">₩([\d,]+)</button>", html)
    assert quick[0] == "154,000"  # what the cart said the fan is short of, first
    assert "100,000" in quick and 'id="back-to-cart"' in html
    key = html.split('name="idempotency_key" value="')[1].split('"')[0]
    response = page_client.post("/wallet/", {"amount": 30_000, "idempotency_key": key}, follow=True)
    html = response.content.decode()
    assert "Added ₩30,000" in html and 'id="balance">₩30,000' in html
    assert "+₩30,000" in html


def test_a_double_clicked_charge_charges_once(page_client, fan):
    for _ in range(2):
        response = page_client.post(
            "/wallet/", {"amount": 30_000, "idempotency_key": "f" * 32}, follow=True
        )
    assert b"not charged twice" in response.content
    assert selectors.wallet_balance(user_id=fan.pk) == 30_000
    assert LedgerEntry.objects.count() == 1


def test_wallet_page_shows_validation_next_to_the_field(page_client, fan):
    response = page_client.post("/wallet/", {"amount": 10, "idempotency_key": "e" * 32})
    html = response.content.decode()
    assert 'id="amount-errors"' in html and "smallest top-up" in html
    assert not LedgerEntry.objects.exists()


def test_wallet_page_needs_login():
    assert Client().get("/wallet/").status_code == 302


def test_operator_admin_cannot_change_money(fan):
    from django.contrib.auth import get_user_model

    charge(fan, 5_000)
    operator = get_user_model().objects.create_superuser("op", "op@example.com", "pw-123456")
    client = Client()
    client.force_login(operator)
    assert client.get(f"/admin/wallet/wallet/{fan.pk}/change/").status_code == 200
    client.post(f"/admin/wallet/wallet/{fan.pk}/change/", {"balance": 999_999})
    assert selectors.wallet_balance(user_id=fan.pk) == 5_000
    assert client.get("/admin/wallet/ledgerentry/add/").status_code == 403


def test_the_admin_reconcile_action_reports_a_match_and_names_a_mismatch(fan, other_fan):
    from django.contrib.auth import get_user_model

    charge(fan, 5_000)
    charge(other_fan, 7_000)
    operator = get_user_model().objects.create_superuser("op", "op@example.com", "pw-123456")
    client = Client()
    client.force_login(operator)

    def reconcile():
        response = client.post(
            "/admin/wallet/wallet/",
            {"action": "reconcile", "_selected_action": [fan.pk, other_fan.pk]},
            follow=True,
        )
        return [str(m) for m in response.context["messages"]]

    assert reconcile() == ["All 2 wallet(s) reconcile."]
    Wallet.objects.filter(pk=other_fan.pk).update(balance=9_999)  # a raw, unledgered change
    assert reconcile() == [f"MISMATCH {other_fan.username}: balance ₩9,999, ledger ₩7,000"]


def test_the_charge_answer_built_directly_equals_the_documented_serializer(fan):
    from wallet.serializers import ChargeOutput, charge_body

    for amount in (1_000, 250_000):
        entry = services.wallet_charge(user_id=fan.pk, amount=amount, now=timezone.now())
        stored = LedgerEntry.objects.get(pk=entry.pk)  # as read back, not as returned
        assert (
            charge_body(entry)
            == ChargeOutput({"balance": stored.balance_after, "entry": stored}).data
        )


def test_a_move_returns_the_entry_exactly_as_stored(fan):
    services.wallet_charge(user_id=fan.pk, amount=50_000, now=timezone.now())
    ref = LedgerRef(payment_id=7, reservation_id=9)
    entry = services.wallet_debit(user_id=fan.pk, amount=20_000, now=timezone.now(), ref=ref)
    stored = LedgerEntry.objects.get(pk=entry.pk)
    fields = ("wallet_id", "kind", "amount", "balance_after", "created_at", "payment_id",
              "reservation_id")  # fmt: skip
    assert [getattr(entry, f) for f in fields] == [getattr(stored, f) for f in fields]
    assert (stored.kind, stored.balance_after, stored.payment_id) == ("payment", 30_000, 7)
