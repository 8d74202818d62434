from datetime import timedelta

import pytest
from django.utils import timezone

from queueing import services
from queueing.models import QueueToken, WaitingRoom
from tests.factories import ConcertFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def log_in(page, live_server, username):
    page.goto(live_server.url + "/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", "correct-horse-battery")
    page.click("button:has-text('Log in')")
    page.wait_for_selector("text=Signed in as")


def test_waiting_fan_moves_on_to_booking_by_itself(page, live_server):
    concert = ConcertFactory(title="Queue Night")
    WaitingRoom.objects.filter(pk=concert.pk).update(max_active=0)
    ahead = UserFactory()
    services.queue_token_issue(user=ahead, concert_id=concert.id, now=timezone.now())
    fan = UserFactory()
    log_in(page, live_server, fan.username)

    page.goto(f"{live_server.url}/concerts/{concert.id}/")
    page.click("#get-in-line")
    page.wait_for_url(f"**/concerts/{concert.id}/queue/")
    assert page.inner_text("#queue-position") == "2"

    # The fan ahead leaves: the page updates its position on its next poll.
    services.queue_token_leave(token=QueueToken.objects.get(user=ahead), now=timezone.now())
    page.wait_for_function(
        "document.querySelector('#queue-position')?.innerText === '1'", timeout=15_000
    )
    # Capacity frees: the fan is admitted and the page moves on with no click.
    services.waiting_room_update(
        concert_id=concert.id, max_active=1, admission_paused=False, now=timezone.now()
    )
    page.wait_for_url(f"**/concerts/{concert.id}/book/", timeout=15_000)
    assert page.is_visible("#admitted")


def test_fan_leaves_the_line_from_the_waiting_room(page, live_server):
    concert = ConcertFactory()
    WaitingRoom.objects.filter(pk=concert.pk).update(max_active=0)
    fan = UserFactory()
    log_in(page, live_server, fan.username)
    page.goto(f"{live_server.url}/concerts/{concert.id}/")
    page.click("#get-in-line")
    page.click("button:has-text('Leave the line')")
    page.wait_for_selector("text=You left the line")
    assert QueueToken.objects.get(user=fan).status == "left"


def test_pre_queue_counts_down_then_shows_the_drawn_place_at_the_start(page, live_server):
    """Issue 16: a scheduled sale. The fan joins the pre-queue, the page counts down to
    the on-sale time, and at the start (the beat job) the page shows their place."""
    starts_at = timezone.now() + timedelta(seconds=6)
    concert = ConcertFactory(title="On Sale Soon")
    WaitingRoom.objects.filter(pk=concert.pk).update(
        sale_starts_at=starts_at, pre_queue_minutes=30, max_active=0
    )
    other = UserFactory()
    services.queue_token_issue(user=other, concert_id=concert.id, now=timezone.now())
    fan = UserFactory()
    log_in(page, live_server, fan.username)

    page.goto(f"{live_server.url}/concerts/{concert.id}/")
    assert "Tickets go on sale at" in page.inner_text("#sale-schedule")
    page.click("#get-in-line")
    page.wait_for_url(f"**/concerts/{concert.id}/queue/")
    assert page.get_attribute("#queue-status", "data-status") == "pre_queue"
    assert page.is_visible("#pre-queue-note")
    first = page.inner_text("#sale-countdown")
    assert first.startswith("0:0"), first  # m:ss, a few seconds to go
    page.wait_for_function(  # it ticks by itself, with no request
        f"document.querySelector('#sale-countdown')?.innerText !== {first!r}", timeout=5_000
    )
    assert page.query_selector("#queue-position") is None  # no place before the start

    # The on-sale time comes; beat's job starts the sale (as it does every second).
    while timezone.now() < starts_at:
        page.wait_for_timeout(200)
    assert services.queue_sales_start_due(now=timezone.now()) == 1
    page.wait_for_selector("#queue-position", timeout=30_000)  # the page's next poll
    assert page.inner_text("#queue-position") in {"1", "2"}  # a place drawn at random
    assert page.get_attribute("#queue-status", "data-status") == "waiting"
    assert QueueToken.objects.get(user=fan).status == "waiting"
