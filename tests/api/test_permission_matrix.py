"""Every endpoint, tried by its owner, by another fan and anonymously (issue 11).

Each row names an operation of the published schema and the status each actor
gets. Another fan never sees or changes the owner's rows: an id of theirs is 404,
their queue token is 403 queue_token_invalid. A test checks the table covers
every operation in docs/openapi.yaml, so a new endpoint cannot skip it.
"""

from dataclasses import dataclass

import pytest
import yaml
from django.conf import settings
from django.utils import timezone
from rest_framework.test import APIClient

from tests.conftest import admit, hold_seat, token_client
from tests.factories import ConcertFactory, UserFactory, make_schedule
from wallet import services as wallet_services

pytestmark = pytest.mark.django_db


@dataclass
class World:
    concert_id: int
    schedule_id: int
    held_id: int  # the owner's held reservation
    paid_id: int  # the owner's paid payment
    entry_id: int  # the owner's ledger entry
    owner_queue_key: str
    owner: APIClient
    other: APIClient


@pytest.fixture
def world():
    concert = ConcertFactory()
    schedule = make_schedule(concert)
    owner, other = UserFactory(), UserFactory()
    owner_key = admit(owner, concert.id).key
    admit(other, concert.id)
    entry = wallet_services.wallet_charge(user_id=owner.pk, amount=500_000, now=timezone.now())
    to_pay = hold_seat(owner, schedule, 2)
    owner_client = token_client(owner)
    paid = owner_client.post(
        "/api/v1/payments", {"reservation_id": to_pay.id}, HTTP_X_QUEUE_TOKEN=owner_key
    )
    assert paid.status_code == 201
    owner_key = admit(owner, concert.id).key  # paying ended the turn; line up again
    held = hold_seat(owner, schedule, 1)
    return World(
        concert_id=concert.id,
        schedule_id=schedule.id,
        held_id=held.id,
        paid_id=paid.json()["payment_id"],
        entry_id=entry.pk,
        owner_queue_key=owner_key,
        owner=owner_client,
        other=token_client(other),
    )


HOLD = {"schedule_id": "{schedule_id}", "seat_number": 3}
NEW_ACCOUNT = {"username": "newcomer-{actor}", "password": "long-enough-pass-1"}

# (method, schema path, body, owner, other, anonymous). The path's ids, and the
# X-Queue-Token every request carries, are the OWNER's, whoever sends it.
ROWS = [
    ("get", "/api/v1/concerts", None, 200, 200, 200),
    ("get", "/api/v1/concerts/{concert_id}", None, 200, 200, 200),
    ("get", "/api/v1/concerts/{concert_id}/dates", None, 200, 403, 401),
    ("get", "/api/v1/schedules/{schedule_id}/seats", None, 200, 403, 401),
    ("post", "/api/v1/concerts/{concert_id}/queue", None, 200, 200, 401),
    ("get", "/api/v1/queue", None, 200, 403, 200),
    ("delete", "/api/v1/queue", None, 204, 403, 401),
    ("get", "/api/v1/wallet", None, 200, 200, 401),
    ("post", "/api/v1/wallet/charges", {"amount": 1000}, 201, 201, 401),
    ("get", "/api/v1/wallet/ledger", None, 200, 200, 401),
    ("get", "/api/v1/wallet/ledger/{entry_id}", None, 200, 404, 401),
    ("get", "/api/v1/reservations", None, 200, 200, 401),
    ("post", "/api/v1/reservations", HOLD, 201, 403, 401),
    ("get", "/api/v1/reservations/{reservation_id}", None, 200, 404, 401),
    ("delete", "/api/v1/reservations/{reservation_id}", None, 200, 404, 401),
    ("get", "/api/v1/payments", None, 200, 200, 401),
    ("post", "/api/v1/payments", {"reservation_id": "{reservation_id}"}, 201, 404, 401),
    ("get", "/api/v1/payments/{payment_id}", None, 200, 404, 401),
    ("post", "/api/v1/checkouts", {"reservation_ids": ["{reservation_id}"]}, 201, 404, 401),
    ("get", "/api/v1/checkouts/{checkout_id}", None, 200, 404, 401),
    ("get", "/api/v1/tickets", None, 200, 200, 401),
    # Waitlists are the caller's own (no id of anyone else's in the path). The world's
    # date has free seats, so joining is refused, and nobody is on it to leave.
    # Operators only (staff): neither fan may read or set a concert's sale schedule.
    ("get", "/api/v1/concerts/{concert_id}/sale", None, 403, 403, 401),
    ("put", "/api/v1/concerts/{concert_id}/sale", {"sale_starts_at": None}, 403, 403, 401),
    ("get", "/api/v1/waitlist", None, 200, 200, 401),
    ("post", "/api/v1/schedules/{schedule_id}/waitlist", None, 409, 409, 401),
    ("delete", "/api/v1/schedules/{schedule_id}/waitlist", None, 404, 404, 401),
    ("get", "/api/v1/auth/me", None, 200, 200, 401),
    ("post", "/api/v1/auth/register", NEW_ACCOUNT, 201, 201, 201),
    ("post", "/api/v1/auth/token", {"username": "nobody", "password": "x"}, 401, 401, 401),
]


def send(world: World, actor: str, method: str, path: str, body: dict | None):
    ids = {
        "concert_id": world.concert_id,
        "schedule_id": world.schedule_id,
        "reservation_id": world.held_id,
        "payment_id": world.paid_id,
        "checkout_id": world.paid_id,  # a seat paid alone is a checkout of one
        "entry_id": world.entry_id,
        "actor": actor,
    }
    if body is not None:  # "{name}" values become the world's ids, as integers if they are
        body = {
            k: [_fill(x, ids) for x in v] if isinstance(v, list) else _fill(v, ids)
            for k, v in body.items()
        }
    client = {"owner": world.owner, "other": world.other, "anonymous": APIClient()}[actor]
    return getattr(client, method)(
        path.format(**ids), body, format="json", HTTP_X_QUEUE_TOKEN=world.owner_queue_key
    )


def _fill(value, ids):
    if not isinstance(value, str):
        return value
    filled = value.format(**ids)
    return int(filled) if filled.isdigit() else filled


@pytest.mark.parametrize("actor", ["owner", "other", "anonymous"])
@pytest.mark.parametrize(("method", "path", "body", "owner", "other", "anonymous"), ROWS)
def test_each_actor_gets_what_the_matrix_says(
    world, actor, method, path, body, owner, other, anonymous
):
    expected = {"owner": owner, "other": other, "anonymous": anonymous}[actor]
    response = send(world, actor, method, path, body)
    assert response.status_code == expected, (actor, method, path, response.content[:300])
    if expected >= 400:
        assert set(response.json()) == {"error"}


def test_another_fans_lists_never_show_the_owners_rows(world):
    owner_ids = {
        r["reservation_id"] for r in world.owner.get("/api/v1/reservations").json()["results"]
    }
    other_ids = {
        r["reservation_id"] for r in world.other.get("/api/v1/reservations").json()["results"]
    }
    assert world.held_id in owner_ids and not owner_ids & other_ids
    assert world.other.get("/api/v1/payments").json()["count"] == 0
    assert world.other.get("/api/v1/tickets").json()["count"] == 0
    assert world.other.get("/api/v1/wallet").json()["balance"] == 0
    assert world.other.get("/api/v1/wallet/ledger").json()["count"] == 0


def test_the_matrix_covers_every_operation_in_the_schema():
    spec = yaml.safe_load((settings.BASE_DIR / "docs" / "openapi.yaml").read_text())
    documented = {(method, path) for path, item in spec["paths"].items() for method in item}
    assert {(row[0], row[1]) for row in ROWS} == documented
