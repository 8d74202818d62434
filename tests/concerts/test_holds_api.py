from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from concerts.models import Reservation
from queueing.models import QueueToken, WaitingRoom
from tests.conftest import admitted_client, token_client
from tests.factories import UserFactory, make_schedule

pytestmark = pytest.mark.django_db
RESERVATION_KEYS = {"reservation_id", "schedule_id", "seat_number", "price", "status", "expires_at"}


def hold(client, schedule, number):
    return client.post("/api/v1/reservations", {"schedule_id": schedule.id, "seat_number": number})


def test_dates_endpoint_shape(concert, schedule, fan):
    client = admitted_client(fan, concert)
    response = client.get(f"/api/v1/concerts/{concert.id}/dates")
    assert response.status_code == 200
    body = response.json()
    assert body["concert_id"] == concert.id
    assert body["dates"] == [
        {
            "schedule_id": schedule.id,
            "starts_at": response.json()["dates"][0]["starts_at"],
            "available_seats": 50,
        }
    ]


def test_seats_endpoint_lists_available_seats_by_number(concert, schedule, fan, other_fan):
    hold(admitted_client(other_fan, concert), schedule, 2)
    response = admitted_client(fan, concert).get(f"/api/v1/schedules/{schedule.id}/seats")
    assert response.status_code == 200
    body = response.json()
    assert body["schedule_id"] == schedule.id
    numbers = [s["number"] for s in body["seats"]]
    assert numbers == [1, *range(3, 51)]
    assert body["seats"][0] == {"number": 1, "price": 100_000}


def test_seats_etag_answers_304_until_something_changes(
    concert, schedule, fan, other_fan, django_capture_on_commit_callbacks
):
    client = admitted_client(fan, concert)
    first = client.get(f"/api/v1/schedules/{schedule.id}/seats")
    etag = first["ETag"]
    assert etag
    again = client.get(f"/api/v1/schedules/{schedule.id}/seats", HTTP_IF_NONE_MATCH=etag)
    assert again.status_code == 304
    assert again.content == b""
    with django_capture_on_commit_callbacks(execute=True):  # as a real commit would
        hold(admitted_client(other_fan, concert), schedule, 10)
    changed = client.get(f"/api/v1/schedules/{schedule.id}/seats", HTTP_IF_NONE_MATCH=etag)
    assert changed.status_code == 200
    assert changed["ETag"] != etag


def test_hold_returns_201_with_the_reservation(concert, schedule, fan):
    response = hold(admitted_client(fan, concert), schedule, 5)
    assert response.status_code == 201
    body = response.json()
    assert set(body) == RESERVATION_KEYS
    assert body["status"] == "held" and body["seat_number"] == 5 and body["price"] == 100_000


@pytest.mark.parametrize(
    "case, status, code",
    [
        ("taken", 409, "seat_unavailable"),
        ("limit", 409, "seat_limit_reached"),
        ("closed", 409, "booking_closed"),
        ("number_0", 400, "validation_error"),
        ("number_51", 400, "validation_error"),
        ("not_a_number", 400, "validation_error"),
        ("unknown_schedule", 404, "schedule_not_found"),
        ("no_queue_token", 403, "queue_token_missing"),
    ],
)
def test_hold_errors(concert, schedule, fan, case, status, code):
    client = admitted_client(fan, concert)
    target, number = schedule, 5
    if case == "taken":
        hold(admitted_client(UserFactory(), concert), schedule, 5)
    elif case == "limit":
        concert.max_seats_per_fan = 1
        concert.save()
        hold(client, schedule, 1)
    elif case == "closed":
        target = make_schedule(concert, opened_ago=timedelta(days=-1))
    elif case == "number_0":
        number = 0
    elif case == "number_51":
        number = 51
    elif case == "not_a_number":
        number = "five"
    elif case == "unknown_schedule":
        target = type("S", (), {"id": 987654})()
    elif case == "no_queue_token":
        client = token_client(fan)
    response = hold(client, target, number)
    assert response.status_code == status, response.json()
    assert response.json()["error"]["code"] == code


def test_gated_endpoints_refuse_a_waiting_fan(concert, schedule, fan):
    WaitingRoom.objects.filter(pk=concert.id).update(max_active=0)
    from queueing import services as queue_services

    token, _ = queue_services.queue_token_issue(user=fan, concert_id=concert.id, now=timezone.now())
    client = token_client(fan)
    client.credentials(
        HTTP_AUTHORIZATION=client._credentials["HTTP_AUTHORIZATION"], HTTP_X_QUEUE_TOKEN=token.key
    )
    for response in (
        client.get(f"/api/v1/concerts/{concert.id}/dates"),
        client.get(f"/api/v1/schedules/{schedule.id}/seats"),
        hold(client, schedule, 1),
    ):
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "queue_token_waiting"


def test_a_token_for_another_concert_is_refused(concert, schedule, fan):
    other = make_schedule()
    WaitingRoom.objects.filter(pk=other.concert.pk).update(max_active=10)
    client = admitted_client(fan, concert)
    response = client.get(f"/api/v1/schedules/{other.id}/seats")
    assert response.json()["error"]["code"] == "queue_token_wrong_concert"


def test_reading_and_cancelling_own_reservations_needs_no_queue_token(concert, schedule, fan):
    reservation_id = hold(admitted_client(fan, concert), schedule, 5).json()["reservation_id"]
    QueueToken.objects.filter(user=fan).update(status="expired")
    client = token_client(fan)
    listing = client.get("/api/v1/reservations")
    assert listing.status_code == 200
    assert [r["reservation_id"] for r in listing.json()["results"]] == [reservation_id]
    one = client.get(f"/api/v1/reservations/{reservation_id}")
    assert set(one.json()) == RESERVATION_KEYS
    cancelled = client.delete(f"/api/v1/reservations/{reservation_id}")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"


def test_an_expired_hold_reads_as_expired(concert, schedule, fan):
    reservation_id = hold(admitted_client(fan, concert), schedule, 5).json()["reservation_id"]
    Reservation.objects.filter(pk=reservation_id).update(expires_at=timezone.now())
    body = token_client(fan).get(f"/api/v1/reservations/{reservation_id}").json()
    assert body["status"] == "expired"


# --- permission matrix ---------------------------------------------------------


@pytest.mark.parametrize("who", ["owner", "other_fan", "anonymous"])
@pytest.mark.parametrize("with_queue_token", [True, False])
@pytest.mark.parametrize(
    "method, path",
    [
        ("get", "/api/v1/reservations"),
        ("get", "/api/v1/reservations/{id}"),
        ("delete", "/api/v1/reservations/{id}"),
        ("post", "/api/v1/reservations"),
        ("get", "/api/v1/schedules/{schedule}/seats"),
        ("get", "/api/v1/concerts/{concert}/dates"),
    ],
)
def test_permission_matrix(concert, schedule, fan, other_fan, who, with_queue_token, method, path):
    reservation_id = hold(admitted_client(fan, concert), schedule, 5).json()["reservation_id"]
    user = {"owner": fan, "other_fan": other_fan, "anonymous": None}[who]
    if user is None:
        client = APIClient()
        if with_queue_token:
            client.credentials(HTTP_X_QUEUE_TOKEN=QueueToken.objects.get(user=fan).key)
    elif with_queue_token:
        client = admitted_client(user, concert) if user != fan else token_client(fan)
        if user == fan:
            client.credentials(
                HTTP_AUTHORIZATION=client._credentials["HTTP_AUTHORIZATION"],
                HTTP_X_QUEUE_TOKEN=QueueToken.objects.get(user=fan).key,
            )
    else:
        client = token_client(user)
    url = path.format(id=reservation_id, schedule=schedule.id, concert=concert.id)
    data = {"schedule_id": schedule.id, "seat_number": 6} if method == "post" else None
    response = getattr(client, method)(url, data) if data else getattr(client, method)(url)

    gated = method == "post" or "seats" in path or "dates" in path
    if user is None:
        expected = 401
    elif gated and not with_queue_token:
        expected = 403
    elif "{id}" in path and who == "other_fan":
        expected = 404  # another fan's reservation does not exist for them
    else:
        expected = 201 if method == "post" else 200
    assert response.status_code == expected, (who, with_queue_token, method, path, response.json())
    if who == "other_fan" and method == "get" and path == "/api/v1/reservations":
        assert response.json()["results"] == []
    if who != "owner" and "{id}" in path:
        assert Reservation.objects.get(pk=reservation_id).status == "held"


# --- query counts ------------------------------------------------------------


def test_seats_query_count_does_not_grow_with_holds(concert, fan):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client = admitted_client(fan, concert)
    small = make_schedule(concert)
    busy = make_schedule(concert)
    for number in range(1, 31):
        hold(admitted_client(UserFactory(), concert), busy, number)
    client.get("/api/v1/auth/me")  # the API token is now cached
    counts, lengths = [], []
    for schedule in (small, busy):
        with CaptureQueriesContext(connection) as ctx:
            response = client.get(f"/api/v1/schedules/{schedule.id}/seats")
        assert response.status_code == 200
        counts.append(len(ctx))
        lengths.append(len(response.json()["seats"]))
    assert lengths == [50, 20]
    assert counts[0] == counts[1] <= 3


def test_dates_query_count_does_not_grow_with_dates_or_holds(concert, fan):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client = admitted_client(fan, concert)
    make_schedule(concert)
    with CaptureQueriesContext(connection) as few:
        baseline = client.get(f"/api/v1/concerts/{concert.id}/dates")
    assert baseline.status_code == 200 and len(baseline.json()["dates"]) == 1
    for _ in range(5):
        schedule = make_schedule(concert)
        for number in range(1, 6):
            hold(admitted_client(UserFactory(), concert), schedule, number)
    with CaptureQueriesContext(connection) as many:
        response = client.get(f"/api/v1/concerts/{concert.id}/dates")
    assert response.status_code == 200 and len(response.json()["dates"]) == 6
    assert len(few) == len(many) <= 4
