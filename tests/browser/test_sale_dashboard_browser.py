"""The operators' live sale dashboard in real Chromium (issue 16): it updates by
itself (htmx polling) and its controls work. (Django's own admin pages are not held
to the fan pages' checks: the admin asks for a /favicon.ico it does not ship.)"""

import os

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from config.models import OperatorAction
from queueing import services as queue_services
from queueing.models import WaitingRoom
from tests.factories import ConcertFactory, UserFactory, make_schedule

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_dashboard_updates_itself_and_pauses_admission(page, live_server):
    concert = ConcertFactory(title="Big Night")
    make_schedule(concert)
    WaitingRoom.objects.filter(pk=concert.pk).update(max_active=0)
    get_user_model().objects.create_superuser("boss", "boss@example.com", "pw-boss-123456")
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(live_server.url + "/admin/login/")
    page.fill("input[name=username]", "boss")
    page.fill("input[name=password]", "pw-boss-123456")
    page.click("input[type=submit]")
    page.goto(f"{live_server.url}/admin/concerts/concert/")
    page.click("text=Dashboard")
    page.wait_for_selector("#sale-waiting")
    assert page.inner_text("#sale-waiting") == "0"

    for _ in range(3):  # fans line up while the operator watches
        queue_services.queue_token_issue(
            user=UserFactory(), concert_id=concert.id, now=timezone.now()
        )
    page.wait_for_function(
        "document.querySelector('#sale-waiting')?.innerText === '3'", timeout=15_000
    )  # no reload: the live part refreshed itself
    if os.environ.get("SCREENSHOTS"):
        page.screenshot(
            path=os.path.join(os.environ["SCREENSHOTS"], "dashboard.png"), full_page=True
        )
    page.click("#control-pause")
    page.wait_for_selector("#sale-paused")
    assert WaitingRoom.objects.get(pk=concert.pk).admission_paused
    assert OperatorAction.objects.get().operator_name == "boss"
    assert errors == []  # htmx and the page's own markup ran cleanly
