import pytest
from django.utils import timezone

from payments.models import Payment
from payments.selectors import money_reconcile
from queueing.models import WaitingRoom
from tests.browser.test_waiting_room_browser import log_in
from tests.factories import ConcertFactory, UserFactory, make_schedule
from wallet import services as wallet_services
from wallet.models import LedgerEntry, Wallet

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
    page.wait_for_selector("text=Seat 21 is in your cart")
    page.click("#go-to-checkout")
    page.dblclick("#pay-all")  # a double click pays once
    page.wait_for_url("**/tickets/")
    assert "21" in page.inner_text("#tickets")
    payment = Payment.objects.get()  # one, for a double click
    assert (payment.status, payment.amount) == ("paid", 40_000)
    debit = LedgerEntry.objects.get(kind="payment")
    assert (debit.amount, debit.payment_id, debit.balance_after) == (40_000, payment.pk, 60_000)
    assert Wallet.objects.get(pk=fan.pk).balance == 60_000
    assert payment.reservation.status == "confirmed" and payment.reservation.seat.number == 21

    page.goto(live_server.url + "/tickets/")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("button:has-text('Cancel & refund')")
    page.wait_for_selector("text=went back to your wallet")
    assert Payment.objects.get().status == "refunded"
    assert not schedule.reservations.filter(status__in=["held", "confirmed"]).exists()
    refund = LedgerEntry.objects.get(kind="refund")
    assert (refund.amount, refund.payment_id) == (40_000, payment.pk)
    assert Wallet.objects.get(pk=fan.pk).balance == 100_000
    assert money_reconcile().ok
