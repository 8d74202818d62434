"""The fan's journeys in real Chromium (issue 12), at desktop and phone widths.

Every page visited is checked: nothing wider than the screen, no serious or critical
axe-core violation, no console error, no failed request. Screenshots of each key page:

    SCREENSHOTS=var/screenshots sh .ci/dev test tests/browser/test_shop_browser.py

writes PNGs for both widths into that folder (the run creates it).
"""

import os
from pathlib import Path

import pytest
from django.utils import timezone

from concerts.models import Reservation
from payments.models import Payment
from payments.selectors import money_reconcile
from queueing.models import WaitingRoom
from tests.browser.conftest import DESKTOP, NARROW, PHONE
from tests.browser.test_waiting_room_browser import log_in
from tests.factories import ConcertFactory, UserFactory, make_schedule
from wallet import services as wallet_services
from wallet.models import LedgerEntry, Wallet

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
VIEWPORTS = {"desktop": DESKTOP, "phone": PHONE, "narrow": NARROW}
SHOTS = Path(os.environ["SCREENSHOTS"]) if os.environ.get("SCREENSHOTS") else None


def admitted_in_browser(page, live_server, fan, concert):
    """Log in, get in line, and land on the booking page (capacity is free)."""
    log_in(page, live_server, fan.username)
    page.goto(f"{live_server.url}/concerts/{concert.id}/")
    page.click("#get-in-line")
    page.wait_for_url(f"**/concerts/{concert.id}/book/")


def sale(seat_price=40_000):
    concert = ConcertFactory(title="Shop Night")
    WaitingRoom.objects.filter(pk=concert.pk).update(max_active=10)
    return concert, make_schedule(concert, seat_price=seat_price)


def shots_for(width):
    return SHOTS / width if SHOTS else None


@pytest.mark.parametrize("width", ["desktop", "phone", "narrow"])
def test_three_seats_in_one_checkout(watched, live_server, width):
    concert, schedule = sale()
    fan = UserFactory()
    wallet_services.wallet_charge(user_id=fan.pk, amount=200_000, now=timezone.now())
    w = watched(VIEWPORTS[width])
    page, shots = w.page, shots_for(width)
    page.goto(live_server.url + "/")
    w.check("1-concerts", shots)
    log_in(page, live_server, fan.username)
    page.goto(f"{live_server.url}/concerts/{concert.id}/")
    w.check("2-concert", shots)
    page.click("#get-in-line")
    page.wait_for_url(f"**/concerts/{concert.id}/book/")
    w.check("3-booking", shots)
    for number in (11, 12, 13):
        page.click(f"button.seat.available[data-seat='{number}']")
        page.wait_for_selector(f"text=Seat {number} is in your cart")
    assert "Cart (3)" in page.inner_text("#cart-badge")
    w.check("4-seat-map-with-cart", shots)
    page.click("#go-to-checkout")
    page.wait_for_url("**/cart/")
    w.check("5-cart", shots)
    assert page.inner_text(f"#cart-total-{concert.id}") == "₩120,000"
    page.click("#pay-all")
    page.wait_for_url("**/tickets/")
    page.wait_for_selector("text=3 tickets booked")
    w.check("6-tickets", shots)
    page.goto(live_server.url + "/wallet/")
    w.check("7-wallet", shots)
    payments = list(Payment.objects.filter(user=fan))
    assert len(payments) == 3 and {p.status for p in payments} == {"paid"}
    assert len({p.checkout_id for p in payments}) == 1
    debit = LedgerEntry.objects.get(kind="payment")  # one debit for the checkout
    assert debit.amount == 120_000
    assert Wallet.objects.get(pk=fan.pk).balance == 80_000
    assert money_reconcile().ok


def test_a_short_balance_tops_up_and_pays_in_one_step_and_keeps_the_seats(watched, live_server):
    concert, schedule = sale(seat_price=60_000)
    fan = UserFactory()  # ₩0, as every new fan
    w = watched()
    page = w.page
    admitted_in_browser(page, live_server, fan, concert)
    for number in (4, 5):
        page.click(f"button.seat.available[data-seat='{number}']")
        page.wait_for_selector(f"text=Seat {number} is in your cart")
    page.click("#go-to-checkout")
    page.wait_for_selector("#shortfall")
    assert "₩120,000 short" in page.inner_text("#shortfall")
    w.check("cart-short", shots_for("desktop"))
    page.click("#top-up-and-pay")
    page.wait_for_url("**/tickets/")
    assert Reservation.objects.filter(user=fan, status="confirmed").count() == 2
    kinds = list(LedgerEntry.objects.order_by("id").values_list("kind", "amount"))
    assert kinds == [("charge", 120_000), ("payment", 120_000)]
    assert Wallet.objects.get(pk=fan.pk).balance == 0


def test_two_fans_pick_the_same_seat_one_gets_it_the_other_is_told_in_plain_words(
    watched, live_server
):
    concert, schedule = sale()
    first, second = UserFactory(), UserFactory()
    pages = []
    for fan in (first, second):
        w = watched()
        admitted_in_browser(w.page, live_server, fan, concert)
        pages.append(w.page)
    # Both maps show seat 7 free; the first fan takes it, then the second tries.
    pages[0].click("button.seat.available[data-seat='7']")
    pages[0].wait_for_selector("text=Seat 7 is in your cart")
    pages[1].click("button.seat.available[data-seat='7']")
    pages[1].wait_for_selector("text=that seat was just taken")
    assert pages[1].is_visible("span.seat.held[data-seat='7']")  # the map is current again
    live = Reservation.objects.filter(seat__schedule=schedule, seat__number=7, status="held")
    assert [r.user_id for r in live] == [first.pk]


def test_a_waiting_room_paused_by_the_organiser_says_so(watched, live_server):
    concert = ConcertFactory(title="Paused Night")
    WaitingRoom.objects.filter(pk=concert.pk).update(max_active=0, admission_paused=True)
    w = watched(PHONE)
    log_in(w.page, live_server, UserFactory().username)
    w.page.goto(f"{live_server.url}/concerts/{concert.id}/")
    w.page.click("#get-in-line")
    w.page.wait_for_selector("#queue-paused")
    w.check("waiting-room-paused", shots_for("phone"))


@pytest.mark.parametrize("width", ["desktop", "phone", "narrow"])
def test_every_other_fan_page_fits_and_passes_axe(watched, live_server, width):
    from queueing import services as queue_services
    from tests.conftest import hold_seat

    concert, schedule = sale()
    WaitingRoom.objects.filter(pk=concert.pk).update(max_active=1)
    fan, ahead = UserFactory(), UserFactory()
    queue_services.queue_token_issue(user=ahead, concert_id=concert.id, now=timezone.now())
    w = watched(VIEWPORTS[width])
    page, shots = w.page, shots_for(width)
    page.goto(live_server.url + "/accounts/signup/")
    w.check("signup", shots)
    page.goto(live_server.url + "/accounts/login/")
    w.check("login", shots)
    log_in(page, live_server, fan.username)
    page.goto(f"{live_server.url}/concerts/{concert.id}/")
    page.click("#get-in-line")
    page.wait_for_selector("#queue-position")
    w.check("waiting-room", shots)
    page.click("button:has-text('Leave the line')")
    page.wait_for_selector("text=You left the line")
    wallet_services.wallet_charge(user_id=fan.pk, amount=100_000, now=timezone.now())
    WaitingRoom.objects.filter(pk=concert.pk).update(max_active=10)
    reservation = hold_seat(fan, schedule, 30)
    page.goto(f"{live_server.url}/concerts/{concert.id}/")
    page.click("#get-in-line")
    page.wait_for_url(f"**/concerts/{concert.id}/book/")
    page.goto(f"{live_server.url}/reservations/{reservation.id}/")
    w.check("hold", shots)
    page.click("#pay")
    page.wait_for_selector("#pay-now")
    w.check("pay", shots)
    page.click("#pay-now")
    page.wait_for_selector("#ticket")
    w.check("ticket", shots)


def test_the_seat_map_works_from_the_keyboard_with_a_visible_focus(watched, live_server):
    concert, schedule = sale()
    fan = UserFactory()
    w = watched()
    page = w.page
    admitted_in_browser(page, live_server, fan, concert)
    seat = "button.seat.available[data-seat='1']"
    # Tab from the last control before the map until seat 1 has the focus.
    for _ in range(60):
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement.dataset.seat") == "1":
            break
    else:
        pytest.fail("seat 1 cannot be reached with the keyboard")
    outline = page.eval_on_selector(seat, "el => getComputedStyle(el).outlineStyle")
    assert outline != "none"  # the focus is visible
    page.keyboard.press("Enter")
    page.wait_for_selector("text=Seat 1 is in your cart")
    assert page.get_attribute("span.seat.mine[data-seat='1']", "aria-label") == (
        "Seat 1, in your cart"
    )
