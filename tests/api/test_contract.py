"""The API's contract, as a client writing code against it relies on it (issue 11)."""

import json

import pytest
import yaml
from django.conf import settings
from django.test import Client
from django.utils import timezone

from config.errors import registry
from payments.models import Payment
from queueing.models import QueueToken
from tests.conftest import admitted_client, hold_seat
from tests.factories import ConcertFactory
from wallet import services as wallet_services

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def spec():
    return yaml.safe_load((settings.BASE_DIR / "docs" / "openapi.yaml").read_text())


def operations(spec):
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


# --- the schema tells the truth ----------------------------------------------------


def test_every_operation_documents_its_errors_with_the_envelope(spec):
    envelope = "#/components/schemas/ErrorEnvelope"
    for path, method, operation in operations(spec):
        errors = {code: r for code, r in operation["responses"].items() if code >= "400"}
        assert errors, (method, path)
        for code, response in errors.items():
            assert response["content"]["application/json"]["schema"]["$ref"] == envelope
            for error_code in registry():
                if f"`{error_code}`" in response["description"]:
                    assert str(registry()[error_code].http_status) == code, (path, error_code)


def test_cancel_is_documented_as_the_200_with_a_body_it_returns(spec):
    delete = spec["paths"]["/api/v1/reservations/{reservation_id}"]["delete"]
    assert "204" not in delete["responses"]
    schema = delete["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema["$ref"].endswith("/CancelOutput")


def test_headers_are_documented(spec):
    pay = spec["paths"]["/api/v1/payments"]["post"]
    names = {p["name"] for p in pay["parameters"] if p["in"] == "header"}
    assert {"X-Queue-Token", "Idempotency-Key"} <= names
    assert "Location" in pay["responses"]["201"]["headers"]
    assert "Idempotent-Replayed" in pay["responses"]["201"]["headers"]
    assert "Retry-After" in pay["responses"]["409"]["headers"]  # idempotency_key_in_use
    poll = spec["paths"]["/api/v1/queue"]["get"]
    assert "Retry-After" in poll["responses"]["200"]["headers"]
    assert "Retry-After" in poll["responses"]["429"]["headers"]
    for path, method, operation in operations(spec):
        if "201" in operation["responses"]:
            assert "Location" in operation["responses"]["201"]["headers"], (method, path)


# --- anything under /api/ answers in the envelope --------------------------------


@pytest.mark.parametrize("path", ["/api/v1/auth/token/", "/api/v1/nope", "/api/nope/"])
def test_a_post_to_an_unknown_api_path_is_a_json_404_even_with_a_session(path, fan):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(fan)
    response = browser.post(path, {"x": 1}, content_type="application/json")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "not_found"


def test_a_refused_csrf_check_under_api_is_a_json_403(fan):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(fan)
    response = browser.post("/api/v1/wallet/charges", {"amount": 1000}, "application/json")
    assert response.status_code == 403
    assert response.json()["error"]["code"] in {"permission_denied", "not_authenticated"}


def test_a_3_mb_body_is_a_413_in_the_envelope_and_writes_nothing(fan_client):
    body = json.dumps({"amount": 10_000, "padding": "x" * 3_000_000})
    response = fan_client.post("/api/v1/wallet/charges", body, content_type="application/json")
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert fan_client.get("/api/v1/wallet").json()["balance"] == 0


# --- one convention for each thing ---------------------------------------------------


def test_ids_are_named_after_their_resource(schedule, fan_client):
    concert = schedule.concert
    listed = Client().get("/api/v1/concerts").json()["results"][0]
    detail = Client().get(f"/api/v1/concerts/{concert.id}").json()
    assert "id" not in listed and listed["concert_id"] == concert.id
    assert detail["schedules"][0]["schedule_id"] == schedule.id
    assert "user_id" in fan_client.get("/api/v1/auth/me").json()


def test_money_is_amount_everywhere_and_payments_list(fan, concert, schedule):
    client = admitted_client(fan, concert)
    wallet_services.wallet_charge(user_id=fan.pk, amount=200_000, now=timezone.now())
    reservation = hold_seat(fan, schedule, 2)
    paid = client.post("/api/v1/payments", {"reservation_id": reservation.id})
    assert paid.status_code == 201
    assert paid["Location"] == f"/api/v1/payments/{paid.json()['payment_id']}"
    ticket = client.get("/api/v1/tickets").json()["results"][0]
    assert "amount_paid" not in ticket and ticket["amount"] == paid.json()["amount"]
    listed = client.get("/api/v1/payments")
    assert listed.status_code == 200
    assert [p["payment_id"] for p in listed.json()["results"]] == [paid.json()["payment_id"]]


def test_a_failed_payment_has_no_ticket(fan, concert, schedule):
    client = admitted_client(fan, concert)
    reservation = hold_seat(fan, schedule, 3)
    assert client.post("/api/v1/payments", {"reservation_id": reservation.id}).status_code == 402
    failed = Payment.objects.get()
    body = client.get(f"/api/v1/payments/{failed.pk}").json()
    assert body["status"] == "failed" and body["ticket"] is None
    assert body["failure_reason"] == "insufficient_balance" and body["paid_at"] is None


def test_a_turn_ended_by_payment_reports_ended_with_its_reason(fan, concert, schedule):
    client = admitted_client(fan, concert)
    wallet_services.wallet_charge(user_id=fan.pk, amount=200_000, now=timezone.now())
    reservation = hold_seat(fan, schedule, 4)
    key = QueueToken.objects.get(user=fan).key
    client.post("/api/v1/payments", {"reservation_id": reservation.id})
    polled = Client().get("/api/v1/queue", HTTP_X_QUEUE_TOKEN=key).json()
    assert (polled["status"], polled["end_reason"]) == ("ended", "paid")


def test_re_holding_your_own_seat_says_so(fan, concert, schedule):
    client = admitted_client(fan, concert)
    first = client.post("/api/v1/reservations", {"schedule_id": schedule.id, "seat_number": 9})
    assert first.status_code == 201
    assert first["Location"] == f"/api/v1/reservations/{first.json()['reservation_id']}"
    again = client.post("/api/v1/reservations", {"schedule_id": schedule.id, "seat_number": 9})
    assert again.status_code == 409
    error = again.json()["error"]
    assert error["code"] == "seat_already_yours"
    assert error["details"]["reservation_id"] == first.json()["reservation_id"]


def test_every_201_names_what_it_created(fan_client, fan):
    concert = ConcertFactory()
    lined_up = fan_client.post(f"/api/v1/concerts/{concert.id}/queue")
    assert lined_up.status_code == 201 and lined_up["Location"] == "/api/v1/queue"
    charged = fan_client.post("/api/v1/wallet/charges", {"amount": 10_000})
    assert charged.status_code == 201
    entry = fan_client.get(charged["Location"])
    assert entry.status_code == 200 and entry.json() == charged.json()["entry"]
    registered = Client().post(
        "/api/v1/auth/register",
        {"username": "someone-new", "password": "a-long-enough-pass-9"},
        content_type="application/json",
    )
    assert registered.status_code == 201 and registered["Location"] == "/api/v1/auth/me"


def test_another_fans_ledger_entry_is_404(fan_client, other_client):
    charged = fan_client.post("/api/v1/wallet/charges", {"amount": 10_000})
    response = other_client.get(charged["Location"])
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "ledger_entry_not_found"


# --- failed logins -----------------------------------------------------------------


def bad_login(client, username, ip="10.0.0.1"):
    return client.post(
        "/api/v1/auth/token",
        {"username": username, "password": "wrong"},
        format="json",
        REMOTE_ADDR=ip,
    )


def test_a_burst_of_bad_logins_from_one_address_is_throttled(anon_client, fan, settings):
    codes = [bad_login(anon_client, f"name-{i}").status_code for i in range(30)]
    assert codes[:20] == [401] * 20  # THROTTLE_AUTH: 20 failures a minute per address
    assert set(codes[20:]) == {429}
    refused = bad_login(anon_client, "name-x")
    assert refused.json()["error"]["code"] == "login_throttled"
    assert int(refused["Retry-After"]) > 0


def test_bad_logins_for_one_username_are_throttled_across_addresses(anon_client, fan):
    codes = [bad_login(anon_client, fan.username, ip=f"10.0.1.{i}").status_code for i in range(12)]
    assert codes[:10] == [401] * 10  # THROTTLE_AUTH_PER_USERNAME: 10 a minute
    assert codes[10:] == [429, 429]
    # The account's owner, from elsewhere, is held back too until the window passes:
    # that is the point (a password guesser rotating addresses gets nowhere).
    good = anon_client.post(
        "/api/v1/auth/token",
        {"username": fan.username, "password": "correct-horse-battery"},
        format="json",
        REMOTE_ADDR="10.9.9.9",
    )
    assert good.status_code == 429


def test_good_logins_are_never_counted(anon_client, fan):
    for _ in range(25):
        response = anon_client.post(
            "/api/v1/auth/token",
            {"username": fan.username, "password": "correct-horse-battery"},
            format="json",
            REMOTE_ADDR="10.0.2.1",
        )
        assert response.status_code == 200


def test_the_login_page_has_the_same_limit(fan):
    page = Client()
    for _ in range(10):
        page.post("/accounts/login/", {"username": fan.username, "password": "no"})
    response = page.post("/accounts/login/", {"username": fan.username, "password": "no"})
    assert "Too many failed logins" in response.content.decode()
