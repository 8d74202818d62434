import pytest
from django.utils import timezone

from payments.models import Payment
from queueing.models import WaitingRoom
from tests.browser.test_waiting_room_browser import log_in
from tests.factories import ConcertFactory, UserFactory, make_schedule
from wallet import services as wallet_services

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_fan_pays_a_held_seat_gets_the_ticket_and_cancels_for_a_refund(page, live_server):
    concert = ConcertFactory(title="Pay Night")
    WaitingRoom.objects.filter(pk=concert.pk).update(max_active=10)
    schedule = make_schedule(concert, seat_price=40_000)
    fan = UserFactory()
    wallet_services.wallet_charge(user_id=fan.pk, amount=100_000, now=timezone.now())
    log_in(page, live_server, fan.username)
    page.goto(f"{live_server.url}/concerts/{concert.id}/")
    page.click("#get-in-line")
    page.wait_for_url(f"**/concerts/{concert.id}/book/")
    page.click("button.seat.available[data-seat='21']")
    page.wait_for_url("**/reservations/*/")
    page.click("#pay")
    assert page.inner_text("#pay-price") == "₩40,000"
    page.dblclick("#pay-now")
    page.wait_for_selector("#ticket")
    assert "Seat 21" in page.inner_text("#ticket")
    assert Payment.objects.filter(status="paid").count() == 1

    page.goto(live_server.url + "/tickets/")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("button:has-text('Cancel & refund')")
    page.wait_for_selector("text=went back to your wallet")
    assert Payment.objects.get().status == "refunded"
    assert not schedule.reservations.filter(status__in=["held", "confirmed"]).exists()


def test_not_enough_balance_explains_and_releases_the_seat(page, live_server):
    concert = ConcertFactory()
    WaitingRoom.objects.filter(pk=concert.pk).update(max_active=10)
    schedule = make_schedule(concert, seat_price=40_000)
    fan = UserFactory()
    log_in(page, live_server, fan.username)
    page.goto(f"{live_server.url}/concerts/{concert.id}/")
    page.click("#get-in-line")
    page.wait_for_url(f"**/concerts/{concert.id}/book/")
    page.click("button.seat.available[data-seat='3']")
    page.wait_for_url("**/reservations/*/")
    page.click("#pay")
    page.click("#pay-now")
    page.wait_for_selector("#failure")
    assert "seat was released" in page.inner_text("#failure")
    page.click("#back-to-seats")
    page.wait_for_selector("button.seat.available[data-seat='3']")
    assert not schedule.reservations.filter(status="held").exists()
