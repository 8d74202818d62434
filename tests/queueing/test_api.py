from datetime import timedelta

import pytest
from django.core.cache import cache
from django.test import override_settings
from django.urls import include, path
from django.utils import timezone
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.test import APIClient
from rest_framework.views import APIView

from queueing.gate import QueueGate
from queueing.models import QueueToken
from queueing.selectors import clear_local_estimates
from tests.conftest import token_client
from tests.factories import ConcertFactory, UserFactory
from tests.queueing.conftest import set_capacity

pytestmark = pytest.mark.django_db

BODY_KEYS = {
    "token",
    "concert_id",
    "status",
    "position",
    "estimated_wait_seconds",
    "poll_after_seconds",
    "sale_starts_at",
    "expires_at",
    "end_reason",
    "sold_out",
}


def issue(client, concert):
    return client.post(f"/api/v1/concerts/{concert.id}/queue")


def allow_next_poll(key):
    cache.delete(f"queue:poll:{key}")


def test_issue_returns_201_then_200_with_the_same_token(fan_client, concert):
    first = issue(fan_client, concert)
    assert first.status_code == 201
    body = first.json()
    assert set(body) == BODY_KEYS
    assert body["concert_id"] == concert.id
    assert len(body["token"]) >= 40  # an unguessable secret
    assert body["status"] == "active"
    assert body["position"] is None and body["estimated_wait_seconds"] == 0
    assert body["expires_at"]

    again = issue(fan_client, concert)
    assert again.status_code == 200
    assert again.json()["token"] == body["token"]


def test_a_waiting_fan_sees_position_eta_and_poll_pace(fan_client, concert):
    set_capacity(concert, 0)
    for _ in range(2):
        issue(token_client(UserFactory()), concert)
    body = issue(fan_client, concert).json()
    assert body["status"] == "waiting"
    assert body["position"] == 3
    assert body["estimated_wait_seconds"] > 0
    assert body["poll_after_seconds"] == 2
    assert body["expires_at"] is None


def test_issue_needs_authentication(anon_client, concert):
    assert issue(anon_client, concert).status_code == 401


def test_issue_for_an_unknown_concert_is_404(fan_client):
    response = fan_client.post("/api/v1/concerts/999999/queue")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "concert_not_found"


def test_poll_returns_the_body_and_retry_after(fan_client, concert):
    set_capacity(concert, 0)
    key = issue(fan_client, concert).json()["token"]
    allow_next_poll(key)
    response = APIClient().get("/api/v1/queue", HTTP_X_QUEUE_TOKEN=key)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == BODY_KEYS
    assert body["position"] == 1
    assert response["Retry-After"] == str(body["poll_after_seconds"])


def test_early_poll_gets_429_without_any_sql(fan_client, concert, django_assert_num_queries):
    set_capacity(concert, 0)
    key = issue(fan_client, concert).json()["token"]
    client = token_client(UserFactory())  # even an Authorization header costs no query
    with django_assert_num_queries(0):
        response = client.get("/api/v1/queue", HTTP_X_QUEUE_TOKEN=key)
    assert response.status_code == 429
    assert int(response["Retry-After"]) >= 1
    error = response.json()["error"]
    assert error["code"] == "poll_too_soon"
    assert error["details"]["retry_after_seconds"] == int(response["Retry-After"])


def test_poll_reports_an_expired_token(fan_client, concert):
    key = issue(fan_client, concert).json()["token"]
    QueueToken.objects.filter(key=key).update(active_until=timezone.now() - timedelta(seconds=1))
    allow_next_poll(key)
    response = APIClient().get("/api/v1/queue", HTTP_X_QUEUE_TOKEN=key)
    assert response.status_code == 200
    assert response.json()["status"] == "expired"


def test_poll_without_or_with_an_unknown_token(anon_client):
    missing = anon_client.get("/api/v1/queue")
    assert missing.status_code == 403
    assert missing.json()["error"]["code"] == "queue_token_missing"
    unknown = anon_client.get("/api/v1/queue", HTTP_X_QUEUE_TOKEN="nope")
    assert unknown.status_code == 404
    # One code, one status: an unknown token is 404 queue_token_not_found; a token
    # that is not yours stays 403 queue_token_invalid.
    assert unknown.json()["error"]["code"] == "queue_token_not_found"


def test_poll_with_someone_elses_token_while_logged_in_is_refused(
    fan_client, other_client, concert
):
    key = issue(fan_client, concert).json()["token"]
    allow_next_poll(key)
    response = other_client.get("/api/v1/queue", HTTP_X_QUEUE_TOKEN=key)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "queue_token_invalid"


def test_leaving_needs_the_owner_signed_in(fan_client, other_client, concert):
    key = issue(fan_client, concert).json()["token"]
    assert APIClient().delete("/api/v1/queue", HTTP_X_QUEUE_TOKEN=key).status_code == 401
    refused = other_client.delete("/api/v1/queue", HTTP_X_QUEUE_TOKEN=key)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "queue_token_invalid"
    assert QueueToken.objects.get(key=key).status != "left"


def test_leaving_returns_204_and_frees_the_slot(
    fan_client, other_client, concert, django_capture_on_commit_callbacks
):
    set_capacity(concert, 1)
    key = issue(fan_client, concert).json()["token"]
    other_key = issue(other_client, concert).json()["token"]
    with django_capture_on_commit_callbacks(execute=True):
        response = fan_client.delete("/api/v1/queue", HTTP_X_QUEUE_TOKEN=key)
    assert response.status_code == 204
    assert QueueToken.objects.get(key=key).status == "left"
    assert QueueToken.objects.get(key=other_key).status == "active"


def test_poll_pace_is_short_at_the_front_and_longer_further_back(concert):
    set_capacity(concert, 0)
    bodies = [issue(token_client(UserFactory()), concert).json() for _ in range(60)]
    assert bodies[0]["poll_after_seconds"] == 2
    assert bodies[-1]["poll_after_seconds"] > bodies[10]["poll_after_seconds"] >= 2


@override_settings(QUEUE_POLL_BUDGET_PER_SECOND=2)
def test_poll_pace_keeps_all_waiting_fans_within_the_budget(concert):
    set_capacity(concert, 0)
    bodies = [issue(token_client(UserFactory()), concert).json() for _ in range(20)]
    cache.delete("queue:total_waiting")
    clear_local_estimates()
    key = bodies[0]["token"]
    allow_next_poll(key)
    body = APIClient().get("/api/v1/queue", HTTP_X_QUEUE_TOKEN=key).json()
    # 20 waiting fans at 2 polls/s in total: nobody polls more often than every 10 s.
    assert body["poll_after_seconds"] >= 10


# --- the DRF gate, on a view of its own -----------------------------------


class GatedView(APIView):
    permission_classes = [IsAuthenticated, QueueGate]

    def queue_concert_id(self, request):
        return int(self.kwargs["concert_id"])

    def get(self, request, concert_id):
        return Response({"ok": True, "token_id": request.queue_token.pk})


urlpatterns = [
    path("gated/<int:concert_id>", GatedView.as_view()),
    path("", include("config.urls")),
]


@pytest.fixture
def gated(settings):
    settings.ROOT_URLCONF = __name__


def gate_get(client, concert, key=None):
    headers = {"HTTP_X_QUEUE_TOKEN": key} if key else {}
    return client.get(f"/gated/{concert.id}", **headers)


@pytest.mark.parametrize(
    "case, code",
    [
        ("missing", "queue_token_missing"),
        ("forged", "queue_token_invalid"),
        ("someone_elses", "queue_token_invalid"),
        ("waiting", "queue_token_waiting"),
        ("expired", "queue_token_expired"),
        ("wrong_concert", "queue_token_wrong_concert"),
    ],
)
def test_gate_refuses_with_its_own_code(gated, fan, fan_client, concert, case, code):
    other = UserFactory()
    target = concert
    key = None
    if case == "forged":
        key = "x" * 43
    elif case == "someone_elses":
        key = issue(token_client(other), concert).json()["token"]
    elif case == "waiting":
        set_capacity(concert, 0)
        key = issue(fan_client, concert).json()["token"]
    elif case == "expired":
        key = issue(fan_client, concert).json()["token"]
        QueueToken.objects.filter(key=key).update(active_until=timezone.now())
    elif case == "wrong_concert":
        key = issue(fan_client, concert).json()["token"]
        target = ConcertFactory()
    response = gate_get(fan_client, target, key)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == code


def test_gate_lets_an_admitted_fan_through(gated, fan_client, concert):
    key = issue(fan_client, concert).json()["token"]
    response = gate_get(fan_client, concert, key)
    assert response.status_code == 200
    assert response.json()["token_id"] == QueueToken.objects.get(key=key).pk


def test_gate_answers_401_to_anonymous_clients(gated, fan_client, concert):
    key = issue(fan_client, concert).json()["token"]
    assert gate_get(APIClient(), concert, key).status_code == 401
