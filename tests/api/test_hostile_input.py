"""Hostile input, tried on every write endpoint and every form (issue 11).

Every value below is invalid where it is sent. The API must answer 4xx in the
error envelope, a page must show the error, nothing may answer 5xx, and nothing
may be written: the rows of every table are counted before and after.
"""

import json

import pytest
from django.apps import apps
from django.test import Client
from rest_framework.test import APIClient

from tests.conftest import admit, admitted_client, hold_seat, token_client
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

HOSTILE_TEXT = [
    "a" * 10_000,  # overlong
    "nul\x00byte",
    "\u202egnp.exe",  # right-to-left override
    "zero\u200bwidth\ufeff",
    "' OR '1'='1",
    "1; DROP TABLE auth_user; --",
    "<script>alert(1)</script>",
]
HOSTILE_NUMBERS = [-1, 0, 10**30, -(10**30), 1.5, "100", "1e3", True, None, [], {}, "\x00"]
HOSTILE_TYPES = [[], {}, [1], {"$gt": ""}, True, None]
NOT_TEXT = [12345, 1.5]  # numbers where text is meant


def row_counts() -> dict[str, int]:
    return {
        model._meta.label: model.objects.count()
        for model in apps.get_models()
        if model._meta.app_label
        in {"auth", "authtoken", "concerts", "queueing", "wallet", "payments", "config"}
    }


@pytest.fixture
def world(fan, concert, schedule):
    client = admitted_client(fan, concert)
    reservation = hold_seat(fan, schedule, 1)
    return {"client": client, "schedule": schedule, "reservation": reservation}


def assert_refused(response):
    assert 400 <= response.status_code < 500, (response.status_code, response.content[:300])
    assert set(response.json()) == {"error"}
    assert set(response.json()["error"]) == {"code", "message", "details"}


def api_cases(world):
    """(path, body) pairs: each write endpoint with each hostile value in each field."""
    schedule, reservation = world["schedule"], world["reservation"]
    for value in HOSTILE_NUMBERS:
        yield "/api/v1/wallet/charges", {"amount": value}
        yield "/api/v1/reservations", {"schedule_id": value, "seat_number": 2}
        yield "/api/v1/reservations", {"schedule_id": schedule.id, "seat_number": value}
        yield "/api/v1/payments", {"reservation_id": value}
    for value in HOSTILE_TEXT + HOSTILE_TYPES:
        yield "/api/v1/wallet/charges", {"amount": value}
        yield "/api/v1/payments", {"reservation_id": value}
    for value in HOSTILE_TEXT + HOSTILE_TYPES + NOT_TEXT:
        yield "/api/v1/auth/register", {"username": value, "password": "long-enough-pass-1"}
        yield "/api/v1/auth/token", {"username": value, "password": value}
    assert reservation  # held, so a payment of a real id would go through


def test_hostile_json_values_on_every_write_endpoint_change_nothing(world):
    client = world["client"]
    before = row_counts()
    for path, body in api_cases(world):
        response = client.post(path, body, format="json")
        assert 400 <= response.status_code < 500, (path, body, response.content[:200])
        assert_refused(response)
    assert row_counts() == before


@pytest.mark.parametrize(
    "raw",
    ["{", '{"amount": 10', "[1, 2", "nul\x00", '{"amount": NaN}', "\ufeff{}", "😀", ""],
)
@pytest.mark.parametrize(
    "path", ["/api/v1/wallet/charges", "/api/v1/reservations", "/api/v1/payments"]
)
def test_malformed_json_bodies_are_refused(world, path, raw):
    before = row_counts()
    response = world["client"].post(path, raw, content_type="application/json")
    assert_refused(response)
    assert row_counts() == before


def test_a_very_large_json_body_is_refused(world):
    before = row_counts()
    body = json.dumps({"amount": 1000, "pad": ["x" * 1000] * 2000})
    response = world["client"].post("/api/v1/wallet/charges", body, content_type="application/json")
    assert response.status_code == 413
    assert_refused(response)
    assert row_counts() == before


@pytest.mark.parametrize("value", HOSTILE_TEXT + ["", " " * 300])
def test_hostile_headers_are_refused(world, fan, concert, value):
    before = row_counts()
    client = token_client(fan)  # signed in, with no queue token of its own
    if value and "\x00" not in value:  # a NUL cannot travel in an HTTP header at all
        charged = client.post(
            "/api/v1/wallet/charges", {"amount": 1000}, HTTP_IDEMPOTENCY_KEY=value
        )
        assert charged.status_code in (201, 400)  # a printable key is a key; others are 400
        if charged.status_code == 201:
            before = row_counts()
        else:
            assert_refused(charged)
    for method, path in (("get", "/api/v1/queue"), ("delete", "/api/v1/queue")):
        response = getattr(client, method)(path, HTTP_X_QUEUE_TOKEN=value)
        assert_refused(response)
    held = client.post(
        "/api/v1/reservations",
        {"schedule_id": world["schedule"].id, "seat_number": 7},
        HTTP_X_QUEUE_TOKEN=value,
    )
    assert_refused(held)
    assert row_counts() == before


def test_hostile_ids_in_paths_are_404_in_the_envelope(world):
    client = world["client"]
    for path in (
        "/api/v1/reservations/99999999999999999999999",
        "/api/v1/payments/0",
        "/api/v1/wallet/ledger/99999999999999999999",
        "/api/v1/concerts/99999999999999999999/queue",
        "/api/v1/reservations/-1",
        "/api/v1/reservations/1%00",
    ):
        response = client.get(path) if "queue" not in path else client.post(path)
        assert response.status_code == 404, path
        assert_refused(response)


# --- forms -----------------------------------------------------------------------


def page_refused(response, *words):
    assert response.status_code < 500, response.status_code
    html = response.content.decode()
    assert any(word in html for word in words), html[:2000]


@pytest.mark.parametrize("value", HOSTILE_TEXT)
def test_hostile_sign_up_and_login_forms_change_nothing(value):
    before = row_counts()
    page = Client()
    signed_up = page.post(
        "/accounts/signup/", {"username": value, "password1": value, "password2": value}
    )
    page_refused(signed_up, "errorlist", "error")
    logged_in = page.post("/accounts/login/", {"username": value, "password": value})
    page_refused(logged_in, "errorlist", "error")
    assert row_counts() == before


@pytest.mark.parametrize("value", [str(v) for v in HOSTILE_NUMBERS] + HOSTILE_TEXT)
def test_hostile_wallet_and_seat_forms_change_nothing(fan, concert, schedule, value):
    page = Client()
    page.force_login(fan)
    page.post(f"/concerts/{concert.id}/queue/join/")
    before = row_counts()
    charged = page.post("/wallet/", {"amount": value, "idempotency_key": "a" * 32}, follow=True)
    page_refused(charged, "errorlist", "error")
    held = page.post(
        f"/concerts/{concert.id}/book/{schedule.id}/hold/", {"seat_number": value}, follow=True
    )
    page_refused(held, "Please pick a seat", "Seat numbers run", "error")
    assert row_counts() == before


@pytest.mark.parametrize("value", HOSTILE_TEXT + [""])
def test_a_hostile_form_key_on_the_pay_page_changes_nothing(fan, concert, schedule, value):
    page = Client()
    page.force_login(fan)
    reservation = hold_seat(fan, schedule, 5)
    session = page.session
    session["queue_tokens"] = {str(concert.id): admit(fan, concert.id).key}
    session.save()
    before = row_counts()
    response = page.post(
        f"/reservations/{reservation.id}/pay/", {"idempotency_key": value}, follow=True
    )
    page_refused(response, "error", "expired")
    assert row_counts() == before


def test_an_anonymous_client_is_refused_before_any_input_is_read():
    before = row_counts()
    for path in ("/api/v1/wallet/charges", "/api/v1/reservations", "/api/v1/payments"):
        response = APIClient().post(path, {"amount": "' OR 1=1"}, format="json")
        assert response.status_code == 401
        assert_refused(response)
    assert row_counts() == before
    assert UserFactory  # (fixtures above create the signed-in fans)


def test_hostile_values_for_a_sale_schedule_change_nothing(concert):
    """The staff-only sale schedule (issue 16): every hostile value is a 4xx, and
    neither the room nor the audit log changes."""
    from django.contrib.auth import get_user_model

    from queueing.models import WaitingRoom

    staff = get_user_model().objects.create_user("ops", password="pw-ops-123456", is_staff=True)
    client = token_client(staff)
    room_before = WaitingRoom.objects.filter(pk=concert.pk).values().get()
    before = row_counts()
    for value in HOSTILE_TEXT + HOSTILE_TYPES + NOT_TEXT + HOSTILE_NUMBERS:
        for body in (
            {"sale_starts_at": value, "pre_queue_minutes": 10},
            {"sale_starts_at": None, "pre_queue_minutes": value},
        ):
            minutes = body["pre_queue_minutes"]
            if body["sale_starts_at"] is None and (minutes == 10 or minutes in (0, "100")):
                continue  # valid: no sale (with a window of 10, 0 or "100" minutes)
            response = client.put(f"/api/v1/concerts/{concert.id}/sale", body, format="json")
            assert_refused(response)
    assert row_counts() == before
    assert WaitingRoom.objects.filter(pk=concert.pk).values().get() == room_before
