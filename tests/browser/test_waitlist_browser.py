"""A waitlist offer arriving, in real Chromium (issue 16): a fan joins a sold-out
date's waitlist from the concert page, a seat frees, the waitlist page shows the
offer by itself, and the fan pays it from the cart with no new wait in line. Every
page visited is checked (no overflow, no serious axe-core violation, no console
error, no failed request), at desktop and phone widths."""

from datetime import timedelta

import pytest
from django.utils import timezone

from concerts.models import Reservation, WaitlistEntry
from payments import services as payment_services
from payments.selectors import money_reconcile
from tests.browser.conftest import DESKTOP, PHONE
from tests.browser.test_waiting_room_browser import log_in
from tests.conftest import hold_seat
from tests.factories import ConcertFactory, UserFactory, make_schedule
from wallet import services as wallet_services

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_a_waitlist_offer_arrives_and_the_fan_pays_it(watched, live_server, viewport):
    concert = ConcertFactory(title="Sold Out Night")
    schedule = make_schedule(concert, seat_price=40_000)
    now = timezone.now()
    holds = {n: hold_seat(UserFactory(), schedule, n, now=now) for n in range(1, 51)}
    Reservation.objects.filter(schedule=schedule).update(expires_at=now + timedelta(hours=1))
    fan = UserFactory()
    wallet_services.wallet_charge(user_id=fan.pk, amount=100_000, now=now)
    w = watched(viewport)
    page = w.page
    log_in(page, live_server, fan.username)

    page.goto(f"{live_server.url}/concerts/{concert.id}/")
    w.check("concert-sold-out")
    page.click(f"#join-waitlist-{schedule.id}")
    page.wait_for_url("**/waitlist/")
    entry = WaitlistEntry.objects.get(user=fan)
    assert page.inner_text(f"#waitlist-position-{entry.id}") == "number 1"
    w.check("waitlist-waiting")

    # A fan holding seat 23 lets it go: the seat is offered to our fan at once.
    payment_services.booking_cancel(
        user_id=holds[23].user_id, reservation_id=holds[23].pk, now=timezone.now()
    )
    page.wait_for_selector(f"#waitlist-offer-{entry.id}", timeout=15_000)  # no reload
    assert "seat 23" in page.inner_text(f"#waitlist-offer-{entry.id}")
    w.check("waitlist-offer")
    page.click(f"#waitlist-pay-{entry.id}")
    page.wait_for_url("**/cart/")
    page.click("#pay-all")
    page.wait_for_url("**/tickets/")
    page.wait_for_selector("text=1 ticket booked")
    w.check("tickets")
    booked = Reservation.objects.get(pk=WaitlistEntry.objects.get(pk=entry.pk).reservation_id)
    assert (booked.user_id, booked.seat.number, booked.status) == (fan.pk, 23, "confirmed")
    assert money_reconcile().ok
