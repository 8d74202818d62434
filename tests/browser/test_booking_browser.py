import re
from datetime import datetime

import pytest
from django.utils import timezone

from concerts.models import Reservation
from queueing.models import WaitingRoom
from tests.browser.test_waiting_room_browser import log_in
from tests.conftest import hold_seat
from tests.factories import ConcertFactory, UserFactory, make_schedule

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_fan_picks_a_seat_sees_the_countdown_and_cancels(page, live_server):
    concert = ConcertFactory(title="Seat Night")
    WaitingRoom.objects.filter(pk=concert.pk).update(max_active=10)
    schedule = make_schedule(concert)
    fan = UserFactory()
    log_in(page, live_server, fan.username)
    page.goto(f"{live_server.url}/concerts/{concert.id}/")
    page.click("#get-in-line")
    page.wait_for_url(f"**/concerts/{concert.id}/book/")

    # Someone else takes seat 8 while the map is open: it disappears by itself.
    hold_seat(UserFactory(), schedule, 8, now=timezone.now())
    page.wait_for_selector("span.seat.held[data-seat='8']", timeout=10_000)

    page.click("button.seat.available[data-seat='15']")
    page.wait_for_selector("text=Seat 15 is in your cart")
    # The cart badge, on every page, counts down to the hold's real end...
    held = Reservation.objects.get(user=fan)
    expires_at = page.get_attribute("#cart-badge .timer", "data-expires-at")
    assert datetime.fromisoformat(expires_at) == held.expires_at
    countdown = page.inner_text("#cart-badge .timer")
    minutes, seconds = re.fullmatch(r"(\d+):(\d\d)", countdown).groups()
    assert 0 < int(minutes) * 60 + int(seconds) <= concert.hold_ttl
    # ...and ticks: wait for the text to change (an event, not a fixed pause).
    page.wait_for_function(
        "before => document.querySelector('#cart-badge .timer').textContent !== before",
        arg=countdown,
    )
    page.click("#cart-badge")
    page.wait_for_url("**/cart/")
    page.click("button[aria-label='Remove seat 15']")
    page.wait_for_selector("text=was released")
    assert page.is_visible("button.seat.available[data-seat='15']")
    assert Reservation.objects.get(user=fan).status == "cancelled"
