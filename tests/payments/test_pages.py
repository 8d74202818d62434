"""Payment pages without a browser: confirm, pay once, ticket, failure, my tickets."""

import pytest
from django.test import Client

from payments.models import Payment
from tests.factories import UserFactory
from tests.payments.conftest import fund, hold
from wallet.models import LedgerEntry

pytestmark = pytest.mark.django_db


@pytest.fixture
def browser(fan, concert):
    client = Client()
    client.force_login(fan)
    client.post(f"/concerts/{concert.id}/queue/join/")
    return client


def key_of(html: str) -> str:
    return html.split('name="idempotency_key" value="')[1].split('"')[0]


def test_confirm_page_shows_seat_price_balance_and_time_left(browser, fan, schedule):
    fund(fan, 120_000)
    reservation = hold(fan, schedule, 8)
    html = browser.get(f"/reservations/{reservation.id}/pay/").content.decode()
    assert 'id="pay-seat">8<' in html
    assert 'id="pay-price">₩100,000<' in html
    assert "₩120,000" in html
    assert 'id="countdown"' in html and 'id="pay-now"' in html


def test_pay_now_twice_pays_once_and_shows_the_ticket(browser, fan, schedule):
    fund(fan, 120_000)
    reservation = hold(fan, schedule, 8)
    key = key_of(browser.get(f"/reservations/{reservation.id}/pay/").content.decode())
    first = browser.post(f"/reservations/{reservation.id}/pay/", {"idempotency_key": key})
    second = browser.post(f"/reservations/{reservation.id}/pay/", {"idempotency_key": key})
    assert first["Location"] == second["Location"]
    ticket = browser.get(first["Location"]).content.decode()
    assert 'id="ticket"' in ticket and "Seat <strong>8</strong>" in ticket
    assert Payment.objects.filter(status="paid").count() == 1
    assert LedgerEntry.objects.filter(kind="payment").count() == 1


def test_a_short_balance_offers_top_up_and_pay_and_never_a_seat_losing_pay_now(
    browser, fan, schedule
):
    """Defect (issue 12): a ₩0 fan was offered an active "Pay now" that released the
    hold. Now the pay page shows the shortfall and sends the fan to top up and pay."""
    fund(fan, 1_000)
    reservation = hold(fan, schedule, 8)
    html = browser.get(f"/reservations/{reservation.id}/pay/").content.decode()
    assert 'id="pay-now"' not in html
    assert "₩99,000 short" in html and 'id="top-up-and-pay"' in html
    cart = browser.get("/cart/").content.decode()
    assert 'id="top-up-and-pay"' in cart and "Top up ₩99,000 and pay ₩100,000" in cart
    reservation.refresh_from_db()
    assert reservation.status == "held"


def test_a_payment_refused_anyway_explains_and_links_to_top_up_and_seats(browser, fan, schedule):
    """If a payment is refused after all (the balance changed meanwhile), the page
    says so in plain words, with the way back."""
    fund(fan, 100_000)
    reservation = hold(fan, schedule, 8)
    key = key_of(browser.get(f"/reservations/{reservation.id}/pay/").content.decode())
    from wallet.models import Wallet

    Wallet.objects.filter(pk=fan.pk).update(balance=0)  # spent elsewhere (test only)
    response = browser.post(f"/reservations/{reservation.id}/pay/", {"idempotency_key": key})
    assert response.status_code == 402
    html = response.content.decode()
    assert "did not have enough" in html and "seat was released" in html
    assert 'id="top-up"' in html and 'id="back-to-seats"' in html


def test_my_tickets_lists_bookings_and_cancel_refunds(browser, fan, schedule):
    fund(fan, 120_000)
    reservation = hold(fan, schedule, 8)
    key = key_of(browser.get(f"/reservations/{reservation.id}/pay/").content.decode())
    browser.post(f"/reservations/{reservation.id}/pay/", {"idempotency_key": key})
    html = browser.get("/tickets/").content.decode()
    assert f'data-reservation="{reservation.id}"' in html and "Cancel &amp; refund" in html
    response = browser.post(f"/reservations/{reservation.id}/cancel/", follow=True)
    assert "₩100,000 went back to your wallet" in response.content.decode()
    assert "No tickets yet" in response.content.decode()


def test_another_fans_pay_page_is_404(browser, schedule):
    other = UserFactory()
    reservation = hold(other, schedule, 9)
    assert browser.get(f"/reservations/{reservation.id}/pay/").status_code == 404


def test_hold_page_links_to_pay(browser, fan, schedule):
    reservation = hold(fan, schedule, 8)
    html = browser.get(f"/reservations/{reservation.id}/").content.decode()
    assert f'href="/reservations/{reservation.id}/pay/"' in html
