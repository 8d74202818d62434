"""The waiting-room pages, without a browser: join, wait, move on, leave."""

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from queueing.models import QueueToken
from tests.factories import UserFactory
from tests.queueing.conftest import set_capacity

pytestmark = pytest.mark.django_db


@pytest.fixture
def browser(fan):
    client = Client()
    client.force_login(fan)
    return client


def join(client, concert):
    return client.post(f"/concerts/{concert.id}/queue/join/")


def test_concert_page_offers_get_in_line_to_a_logged_in_fan(browser, concert):
    assert b"Get in line" in browser.get(f"/concerts/{concert.id}/").content
    assert b"Get in line" not in Client().get(f"/concerts/{concert.id}/").content


def test_joining_a_full_room_shows_position_eta_and_progress(browser, concert):
    set_capacity(concert, 0)
    for _ in range(3):
        other = Client()
        other.force_login(UserFactory())
        join(other, concert)
    response = join(browser, concert)
    assert response.status_code == 302
    assert response["Location"] == f"/concerts/{concert.id}/queue/"
    page = browser.get(response["Location"])
    html = page.content.decode()
    assert 'id="queue-position">4<' in html
    assert "Estimated wait" in html
    assert 'role="progressbar"' in html
    assert "Leave the line" in html
    # htmx polls at the server's pace; without JS a meta refresh does the same.
    assert 'hx-trigger="load delay:2s"' in html
    assert '<meta http-equiv="refresh" content="2">' in html


def test_the_status_fragment_redirects_an_admitted_fan_to_booking(browser, concert):
    set_capacity(concert, 0)
    join(browser, concert)
    fragment = browser.get(f"/concerts/{concert.id}/queue/status/", HTTP_HX_REQUEST="true")
    assert fragment.status_code == 200
    assert b'data-status="waiting"' in fragment.content
    set_capacity(concert, 1)
    QueueToken.objects.filter(concert=concert).update(
        status="active", active_until=timezone.now() + timedelta(minutes=5)
    )
    fragment = browser.get(f"/concerts/{concert.id}/queue/status/", HTTP_HX_REQUEST="true")
    assert fragment["HX-Redirect"] == f"/concerts/{concert.id}/book/"


def test_an_admitted_fan_goes_straight_to_the_booking_page(browser, concert):
    response = join(browser, concert)
    room = browser.get(response["Location"])
    assert room.status_code == 302 and room["Location"] == f"/concerts/{concert.id}/book/"
    booking = browser.get(room["Location"])
    assert booking.status_code == 200
    assert b'id="admitted"' in booking.content


def test_booking_page_sends_a_fan_without_a_token_back_to_the_concert(browser, concert):
    response = browser.get(f"/concerts/{concert.id}/book/", follow=True)
    assert response.redirect_chain[-1][0] == f"/concerts/{concert.id}/"
    html = response.content.decode()
    assert "press “Get in line” first" in html
    # Defect (issue 12): API wording leaked into pages.
    assert "X-Queue-Token" not in html and "waiting-room token" not in html


def test_booking_page_sends_a_waiting_fan_to_the_waiting_room(browser, concert):
    set_capacity(concert, 0)
    join(browser, concert)
    response = browser.get(f"/concerts/{concert.id}/book/")
    assert response["Location"] == f"/concerts/{concert.id}/queue/"


def test_an_expired_turn_shows_a_rejoin_button(browser, concert):
    set_capacity(concert, 0)
    join(browser, concert)
    QueueToken.objects.filter(concert=concert).update(status="expired")
    html = browser.get(f"/concerts/{concert.id}/queue/").content.decode()
    assert 'id="queue-ended"' in html and "Get in line again" in html
    assert "hx-get" not in html


def test_leaving_the_line(browser, concert, fan):
    set_capacity(concert, 0)
    join(browser, concert)
    response = browser.post(f"/concerts/{concert.id}/queue/leave/", follow=True)
    assert b"You left the line" in response.content
    assert QueueToken.objects.get(user=fan).status == "left"


def test_joining_needs_a_login(concert):
    response = Client().post(f"/concerts/{concert.id}/queue/join/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
