"""The fan's side reads like a ticket shop (issue 12), and operators read money and
local times. Browser-level checks (phones, keyboard, axe) are in tests/browser/."""

import re

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from queueing.models import WaitingRoom
from tests.conftest import hold_seat
from tests.factories import ConcertFactory, UserFactory, make_schedule

pytestmark = pytest.mark.django_db


def signed_in(user):
    page = Client()
    page.force_login(user)
    return page


def test_a_paused_room_says_so_instead_of_looking_alive(fan):
    """Defect (issue 12): a paused room showed 'place 1, about 100 s' and no notice."""
    concert = ConcertFactory()
    WaitingRoom.objects.filter(pk=concert.pk).update(max_active=0, admission_paused=True)
    page = signed_in(fan)
    html = page.post(f"/concerts/{concert.id}/queue/join/", follow=True).content.decode()
    assert 'id="queue-paused"' in html and "paused admission" in html
    assert 'id="queue-eta"' not in html  # no estimate that cannot come true
    WaitingRoom.objects.filter(pk=concert.pk).update(admission_paused=False)
    html = page.get(f"/concerts/{concert.id}/queue/").content.decode()
    assert 'id="queue-paused"' not in html and 'id="queue-eta"' in html


def test_no_emoji_for_the_logo_or_the_success_mark_and_a_favicon_is_served(fan, schedule):
    """Defect (issue 12): emoji rendered as empty boxes without an emoji font, and
    every page asked for a favicon that was not there."""
    page = signed_in(fan)
    html = page.get("/").content.decode()
    assert "🎫" not in html and "🎉" not in html
    assert re.search(r'class="brand" href="/"><svg', html)
    icon = re.search(r'<link rel="icon" href="([^"]+)"', html)[1]
    assert page.get(icon).status_code == 200


def test_the_legend_shows_an_available_square(fan, concert, schedule):
    """Defect (issue 12): the CSS styled only button.seat.available, so the legend's
    span.seat.available had no colour at all."""
    css = b"".join(Client().get("/static/css/site.css").streaming_content).decode()
    rule = re.search(r"(?m)^\.seat\.available \{([^}]*)\}", css)
    assert rule and "background" in rule[1]


def test_the_ticket_page_reads_as_a_receipt(fan, concert, schedule):
    """Defect (issue 12): the ticket said 'Paid ₩154,000 · paid'."""
    from payments.models import Payment
    from tests.conftest import admitted_client
    from wallet import services as wallet_services

    client = admitted_client(fan, concert)
    wallet_services.wallet_charge(user_id=fan.pk, amount=200_000, now=timezone.now())
    paid = client.post("/api/v1/payments", {"reservation_id": hold_seat(fan, schedule, 3).id})
    payment = Payment.objects.get(pk=paid.json()["payment_id"])
    html = signed_in(fan).get(f"/payments/{payment.pk}/").content.decode()
    assert "· paid" not in html and "Paid ₩100,000 on " in html
    assert "🎉" not in html


def test_concert_cards_show_prices_the_next_date_and_seats_left(fan):
    concert = ConcertFactory(title="Card Night")
    soon = make_schedule(concert, seat_price=88_000)
    make_schedule(concert, seat_price=154_000)
    hold_seat(UserFactory(), soon, 1)
    sold_out = ConcertFactory(title="Gone Night")
    gone = make_schedule(sold_out, seat_price=50_000)
    for number in range(1, 51):
        hold_seat(UserFactory(), gone, number)
    html = Client().get("/").content.decode()
    card = html[html.index(f'data-concert="{concert.id}"') :]
    card = card[: card.index("</li>")]
    assert "₩88,000 – ₩154,000" in card and "99 seats left" in card and "Next: " in card
    gone_card = html[html.index(f'data-concert="{sold_out.id}"') :]
    assert "Sold out" in gone_card[: gone_card.index("</li>")]


def test_the_seat_map_shows_the_stage_and_each_seats_price_and_state(fan, concert, schedule):
    hold_seat(UserFactory(), schedule, 4)
    page = signed_in(fan)
    page.post(f"/concerts/{concert.id}/queue/join/")
    html = page.get(f"/concerts/{concert.id}/book/{schedule.id}/").content.decode()
    assert 'class="stage"' in html
    assert 'aria-label="Seat 5, ₩100,000, available: add to cart"' in html
    assert 'aria-label="Seat 4, held by someone"' in html


def test_operators_read_local_times_and_won(schedule):
    from concerts.models import Schedule

    local = timezone.localtime(schedule.starts_at).strftime("%Y-%m-%d %H:%M")
    assert str(Schedule.objects.get(pk=schedule.pk)).endswith(local)
    operator = get_user_model().objects.create_superuser("op", "op@example.com", "pw-123456")
    page = signed_in(operator)
    hold_seat(UserFactory(), schedule, 2)
    html = page.get("/admin/concerts/reservation/").content.decode()
    assert "₩100,000" in html
    ConcertFactory(title="Default Room")  # its room leaves max_active blank
    rooms = page.get("/admin/queueing/waitingroom/").content.decode()
    assert "100 (default)" in rooms  # the default capacity is shown when max_active is blank
