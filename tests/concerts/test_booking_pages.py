"""Booking pages without a browser: dates, seat map, hold, cancel, plain-word errors."""

import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from concerts.models import Reservation
from tests.conftest import hold_seat
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def browser(fan, concert):
    client = Client()
    client.force_login(fan)
    client.post(f"/concerts/{concert.id}/queue/join/")
    return client


def test_booking_page_shows_dates_with_counts_and_a_seat_map(browser, concert, schedule):
    hold_seat(UserFactory(), schedule, 3, now=timezone.now())
    html = browser.get(f"/concerts/{concert.id}/book/").content.decode()
    assert "49 seats left" in html
    assert html.count('name="seat_number"') == 49
    assert 'class="seat held" data-seat="3"' in html
    assert "available</li>" in html and "sold</li>" in html  # the legend
    assert 'hx-trigger="every 4s"' in html


def test_picking_a_seat_holds_it_and_shows_the_countdown(browser, concert, schedule, fan):
    response = browser.post(
        f"/concerts/{concert.id}/book/{schedule.id}/hold/", {"seat_number": 12}, follow=True
    )
    reservation = Reservation.objects.get(user=fan)
    # Back on the seat map, to pick more: the seat is in the cart, which counts down.
    assert response.redirect_chain[-1][0] == f"/concerts/{concert.id}/book/{schedule.id}/"
    html = response.content.decode()
    assert "Seat 12 is in your cart" in html
    assert 'id="cart-badge"' in html and "Cart (1)" in html
    expires = reservation.expires_at.astimezone(timezone.get_current_timezone()).isoformat()
    assert f'data-expires-at="{expires}"' in html
    assert 'id="go-to-checkout"' in html
    fragment = browser.get(f"/concerts/{concert.id}/book/{schedule.id}/seats/").content.decode()
    assert 'class="seat mine" data-seat="12"' in fragment


def test_a_taken_seat_is_explained_in_plain_words(browser, concert, schedule):
    hold_seat(UserFactory(), schedule, 12, now=timezone.now())
    response = browser.post(
        f"/concerts/{concert.id}/book/{schedule.id}/hold/", {"seat_number": 12}, follow=True
    )
    assert b"that seat was just taken" in response.content


def test_the_limit_is_explained_in_plain_words(browser, concert, schedule):
    concert.max_seats_per_fan = 1
    concert.save()
    browser.post(f"/concerts/{concert.id}/book/{schedule.id}/hold/", {"seat_number": 1})
    response = browser.post(
        f"/concerts/{concert.id}/book/{schedule.id}/hold/", {"seat_number": 2}, follow=True
    )
    assert b"most seats allowed" in response.content


def test_an_expired_hold_is_explained_in_plain_words(browser, concert, schedule, fan):
    browser.post(f"/concerts/{concert.id}/book/{schedule.id}/hold/", {"seat_number": 4})
    reservation = Reservation.objects.get(user=fan)
    Reservation.objects.filter(pk=reservation.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    html = browser.get(f"/reservations/{reservation.id}/").content.decode()
    assert "Your hold expired" in html and "Back to the seat map" in html


def test_cancel_frees_the_seat(browser, concert, schedule, fan):
    browser.post(f"/concerts/{concert.id}/book/{schedule.id}/hold/", {"seat_number": 4})
    reservation = Reservation.objects.get(user=fan)
    response = browser.post(f"/reservations/{reservation.id}/cancel/", follow=True)
    assert b"was released" in response.content
    assert 'value="4" class="seat available"' in response.content.decode()


def test_another_fans_hold_page_is_404(browser, schedule):
    other = hold_seat(UserFactory(), schedule, 9, now=timezone.now())
    assert browser.get(f"/reservations/{other.id}/").status_code == 404
    assert browser.post(f"/reservations/{other.id}/cancel/").status_code == 404


def test_booking_pages_need_an_active_turn(concert, schedule):
    client = Client()
    client.force_login(UserFactory())
    response = client.post(f"/concerts/{concert.id}/book/{schedule.id}/hold/", {"seat_number": 1})
    assert response.status_code == 302
    assert not Reservation.objects.exists()


def test_operator_sees_each_seats_live_status_and_holder(schedule):
    holder = UserFactory(username="holder-fan")
    hold_seat(holder, schedule, 5, now=timezone.now())
    operator = get_user_model().objects.create_superuser("op", "op@example.com", "pw-123456")
    client = Client()
    client.force_login(operator)
    html = client.get(f"/admin/concerts/schedule/{schedule.id}/change/").content.decode()
    html = html[: html.find('id="seats-empty"')]  # the inline's blank template row follows
    statuses = re.findall(r'field-live_status">\s*<p>(\w+)</p>', html)
    holders = re.findall(r'field-holder">\s*<p>([^<]+)</p>', html)
    assert len(statuses) == len(holders) == 50
    assert (statuses[4], holders[4]) == ("held", "holder-fan")  # seat 5, and only seat 5
    assert statuses.count("held") == 1 and statuses.count("available") == 49


def test_operator_releases_a_hold_through_the_service(schedule):
    reservation = hold_seat(UserFactory(), schedule, 5, now=timezone.now())
    operator = get_user_model().objects.create_superuser("op", "op@example.com", "pw-123456")
    client = Client()
    client.force_login(operator)
    client.post(
        "/admin/concerts/reservation/",
        {"action": "release_holds", "_selected_action": [reservation.id]},
    )
    reservation.refresh_from_db()
    assert reservation.status == "cancelled"
