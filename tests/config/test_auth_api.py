import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token

from tests.conftest import token_client

pytestmark = pytest.mark.django_db


def test_register_returns_id_username_and_a_working_token(anon_client):
    response = anon_client.post(
        "/api/v1/auth/register", {"username": "newfan", "password": "a-long-secret-77"}
    )
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"user_id", "username", "token"}
    assert response["Location"] == "/api/v1/auth/me"
    assert body["username"] == "newfan"
    assert Token.objects.get(user_id=body["user_id"]).key == body["token"]

    anon_client.credentials(HTTP_AUTHORIZATION=f"Token {body['token']}")
    me = anon_client.get("/api/v1/auth/me")
    assert me.status_code == 200
    assert me.json() == {"user_id": body["user_id"], "username": "newfan"}


def test_register_rejects_a_duplicate_username(anon_client, fan):
    response = anon_client.post(
        "/api/v1/auth/register", {"username": fan.username, "password": "a-long-secret-77"}
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert "username" in error["details"]
    assert get_user_model().objects.filter(username=fan.username).count() == 1


def test_register_applies_password_validators(anon_client):
    response = anon_client.post("/api/v1/auth/register", {"username": "weak", "password": "123"})
    assert response.status_code == 400
    assert "password" in response.json()["error"]["details"]
    assert not get_user_model().objects.filter(username="weak").exists()


def test_token_endpoint_returns_the_account_token(anon_client, fan):
    response = anon_client.post(
        "/api/v1/auth/token", {"username": fan.username, "password": "correct-horse-battery"}
    )
    assert response.status_code == 200
    assert response.json() == {"token": Token.objects.get(user=fan).key}


def test_token_endpoint_rejects_bad_credentials(anon_client, fan):
    response = anon_client.post(
        "/api/v1/auth/token", {"username": fan.username, "password": "wrong"}
    )
    # Wrong credentials are 401 invalid_credentials (a missing field stays 400).
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_credentials"
    assert response["WWW-Authenticate"] == "Token"


def test_protected_endpoint_needs_a_token(anon_client):
    response = anon_client.get("/api/v1/auth/me")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert response.json()["error"]["code"] == "not_authenticated"


def test_protected_endpoint_accepts_a_token(fan):
    response = token_client(fan).get("/api/v1/auth/me")
    assert response.status_code == 200
    assert response.json()["username"] == fan.username


def test_an_unknown_token_is_refused(anon_client):
    anon_client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    response = anon_client.get("/api/v1/auth/me")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"
