import pytest
from django.contrib.auth import get_user_model

from tests.factories import ConcertFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_fan_signs_up_browses_and_logs_back_in(page, live_server):
    concert = ConcertFactory(title="Browser Beats", artist="Headless")
    page.goto(live_server.url + "/")
    page.click("text=Sign up")
    page.fill("input[name=username]", "chromefan")
    page.fill("input[name=password1]", "a-long-secret-77")
    page.fill("input[name=password2]", "a-long-secret-77")
    page.click("button:has-text('Sign up')")
    page.wait_for_selector("text=Signed in as")
    assert get_user_model().objects.filter(username="chromefan").exists()

    page.click("text=Browser Beats")
    assert page.url.endswith(f"/concerts/{concert.id}/")
    assert "Headless" in page.content()

    page.click("button:has-text('Log out')")
    page.wait_for_selector("text=Log in")
    page.click("text=Log in")
    page.fill("input[name=username]", "chromefan")
    page.fill("input[name=password]", "a-long-secret-77")
    page.click("button:has-text('Log in')")
    page.wait_for_selector("text=Signed in as")
