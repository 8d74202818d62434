import re

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from tests.factories import ConcertFactory, make_schedule

pytestmark = pytest.mark.django_db


def test_home_lists_concerts():
    ConcertFactory(title="Spring Fever", artist="Band A")
    response = Client().get("/")
    assert response.status_code == 200
    assert b"Spring Fever" in response.content
    assert b"Sign up" in response.content


def test_concert_page_shows_its_dates():
    concert = ConcertFactory(title="Night Owls")
    make_schedule(concert)
    response = Client().get(f"/concerts/{concert.id}/")
    assert response.status_code == 200
    assert b"Night Owls" in response.content
    assert response.content.count(b"<tr><td>") == 1


def test_unknown_concert_page_is_404():
    assert Client().get("/concerts/424242/").status_code == 404


def test_pages_load_no_asset_from_a_cdn():
    ConcertFactory()
    page = Client()
    html = page.get("/").content.decode()
    assert "https://" not in html and "//cdn" not in html
    scripts = re.findall(r'<script[^>]*\bsrc="([^"]+)"', html)
    stylesheets = re.findall(r'<link[^>]*\bhref="([^"]+\.css)"', html)
    assert any("htmx" in src for src in scripts), scripts  # htmx itself, served by us
    for asset in scripts + stylesheets:
        assert asset.startswith("/static/"), asset
        assert page.get(asset).status_code == 200, asset


def test_fan_signs_up_logs_out_and_logs_in():
    client = Client(enforce_csrf_checks=False)
    response = client.post(
        "/accounts/signup/",
        {"username": "newbie", "password1": "a-long-secret-77", "password2": "a-long-secret-77"},
        follow=True,
    )
    assert response.status_code == 200
    assert b"Signed in as" in response.content
    assert get_user_model().objects.filter(username="newbie").exists()

    client.post("/accounts/logout/")
    assert b"Signed in as" not in client.get("/").content

    response = client.post(
        "/accounts/login/", {"username": "newbie", "password": "a-long-secret-77"}, follow=True
    )
    assert b"Signed in as" in response.content


def test_signup_shows_validation_errors_next_to_fields():
    response = Client().post(
        "/accounts/signup/", {"username": "x", "password1": "123", "password2": "456"}
    )
    assert response.status_code == 200
    assert b"errorlist" in response.content
    assert not get_user_model().objects.filter(username="x").exists()


def test_logout_needs_post_with_csrf():
    client = Client(enforce_csrf_checks=True)
    assert client.post("/accounts/logout/").status_code == 403
