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
