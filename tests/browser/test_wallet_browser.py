import pytest

from config.models import IdempotencyRecord
from tests.browser.test_waiting_room_browser import log_in
from tests.factories import UserFactory
from wallet.models import LedgerEntry, Wallet

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_double_clicked_charge_button_charges_once(page, live_server):
    fan = UserFactory()
    log_in(page, live_server, fan.username)
    page.goto(live_server.url + "/wallet/")
    page.click("button:has-text('₩50,000')")  # a quick amount fills the field
    assert page.input_value("#id_amount") == "50000"
    page.dblclick("#charge-button")
    page.wait_for_selector("text=Added ₩50,000")
    assert page.inner_text("#balance") == "₩50,000"
    entry = LedgerEntry.objects.get(wallet_id=fan.pk)  # exactly one, for both clicks
    assert (entry.kind, entry.amount, entry.balance_after) == ("charge", 50_000, 50_000)
    assert Wallet.objects.get(pk=fan.pk).balance == 50_000
    assert IdempotencyRecord.objects.filter(user=fan, scope="wallet.charge").count() == 1


def test_a_too_small_charge_is_explained_next_to_the_field(page, live_server):
    fan = UserFactory()
    log_in(page, live_server, fan.username)
    page.goto(live_server.url + "/wallet/")
    page.fill("#id_amount", "500")
    page.click("#charge-button")
    assert "smallest top-up" in page.inner_text("#amount-errors")
    assert not LedgerEntry.objects.filter(wallet_id=fan.pk).exists()
    assert not Wallet.objects.filter(pk=fan.pk).exists()
