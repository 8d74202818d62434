"""Every API error uses one envelope: {"error": {"code", "message", "details"}}."""

import pytest
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


def assert_envelope(response, status: int, code: str) -> dict:
    assert response.status_code == status
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert isinstance(body["error"]["details"], dict)
    return body["error"]


def test_400_puts_field_messages_under_details(anon_client):
    error = assert_envelope(
        anon_client.post("/api/v1/auth/register", {"username": ""}), 400, "validation_error"
    )
    assert set(error["details"]) == {"username", "password"}


def test_400_for_malformed_json(anon_client):
    response = anon_client.post(
        "/api/v1/auth/register", data="{not json", content_type="application/json"
    )
    assert_envelope(response, 400, "parse_error")


def test_401_when_not_authenticated(anon_client):
    assert_envelope(anon_client.get("/api/v1/auth/me"), 401, "not_authenticated")


def test_403_when_a_session_request_lacks_its_csrf_token(fan):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(fan)
    error = assert_envelope(client.post("/api/v1/auth/me", {}), 403, "permission_denied")
    assert "CSRF" in error["message"]


def test_404_for_an_unknown_object(anon_client):
    assert_envelope(anon_client.get("/api/v1/concerts/987654"), 404, "concert_not_found")


@pytest.mark.parametrize("path", ["/api/v1/no-such-thing", "/api/nothing/here/", "/api"])
def test_404_for_an_unknown_api_url_is_json_not_html(anon_client, path):
    assert_envelope(anon_client.get(path), 404, "not_found")


def test_405_for_a_wrong_method(anon_client):
    assert_envelope(anon_client.delete("/api/v1/concerts"), 405, "method_not_allowed")
