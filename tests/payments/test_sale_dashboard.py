"""The operators' live sale dashboard (issue 16): the figures, the charts, the
controls (each one service call, logged with the operator's name) and the audit log."""

from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.test import Client
from django.utils import timezone

from config.models import OperatorAction
from payments import services as payment_services
from payments.selectors import sale_dashboard
from queueing import services as queue_services
from queueing.models import QueueToken, WaitingRoom
from tests.conftest import admit, hold_seat, token_client
from tests.factories import UserFactory
from wallet import services as wallet_services

pytestmark = pytest.mark.django_db


@pytest.fixture
def busy_sale(concert, schedule, django_capture_on_commit_callbacks):
    """Capacity 2: two fans admitted (one pays a seat, one holds one), three waiting."""
    WaitingRoom.objects.filter(pk=concert.pk).update(max_active=2)
    payer, holder = UserFactory(), UserFactory()
    wallet_services.wallet_charge(user_id=payer.pk, amount=500_000, now=timezone.now())
    paid = hold_seat(payer, schedule, 1)
    hold_seat(holder, schedule, 2)
    now = timezone.now()
    waiting = [
        queue_services.queue_token_issue(user=UserFactory(), concert_id=concert.id, now=now)[0]
        for _ in range(3)
    ]
    with django_capture_on_commit_callbacks(execute=True):  # the freed turn refills
        answer = payment_services.payment_submit(
            user=payer, reservation_id=paid.pk,
            queue_key=QueueToken.objects.get(user=payer, status="active").key,
            idempotency_key="dash-1", now=timezone.now(),
        )  # fmt: skip
    assert answer.status == 201
    return concert, schedule, waiting


def url(concert, suffix=""):
    return f"/admin/payments/payment/dashboard/{concert.id}/{suffix}"


def test_the_figures_say_what_the_sale_is_doing(busy_sale):
    concert, schedule, _ = busy_sale
    board = sale_dashboard(concert_id=concert.id, now=timezone.now())
    # The payment ended the payer's turn and admitted the first fan waiting.
    assert (board.room.waiting, board.room.active, board.room.capacity) == (2, 2, 2)
    assert (board.held, board.sold, board.revenue) == (1, 1, schedule.seats.get(number=1).price)
    (date,) = board.dates
    assert (date.held, date.sold, date.free, date.waitlist) == (1, 1, 48, 0)
    assert board.admitted_last_minute == 3  # two at line-up, one after the payment
    assert board.sales_series[-1] == 1 and len(board.sales_series) == 30
    assert board.room.waiting_series[-1] == 2 and board.room.active_series[-1] == 2
    assert board.room.eta_seconds is not None


def test_early_polls_refused_are_counted_for_the_dashboard(busy_sale):
    concert, _, waiting = busy_sale
    from queueing import mirror

    mirror.rebuild()
    poller = Client()
    key = waiting[-1].key
    assert poller.get("/api/v1/queue", HTTP_X_QUEUE_TOKEN=key).status_code == 200
    for _ in range(3):
        assert poller.get("/api/v1/queue", HTTP_X_QUEUE_TOKEN=key).status_code == 429
    board = sale_dashboard(concert_id=concert.id, now=timezone.now())
    assert board.early_polls_last_minute == 3


def test_the_page_and_its_live_fragment_render_with_charts(busy_sale, operator_client):
    concert, _, _ = busy_sale
    page = operator_client.get(url(concert)).content.decode()
    assert 'hx-trigger="every 5s"' in page and page.count('class="sparkline"') == 5
    assert 'id="sale-waiting">2<' in page
    live = operator_client.get(url(concert, "live/"))
    assert live.status_code == 200 and "sale-revenue" in live.content.decode()
    assert operator_client.get("/admin/payments/payment/dashboard/999999/").status_code == 404
    # The concerts list links each concert to its dashboard.
    assert url(concert) in operator_client.get("/admin/concerts/concert/").content.decode()


def test_fans_cannot_open_the_dashboard(busy_sale):
    concert, _, _ = busy_sale
    fan = Client()
    fan.force_login(UserFactory())
    assert fan.get(url(concert)).status_code == 302  # to the admin login
    assert fan.post(url(concert, "control/"), {"action": "pause"}).status_code == 302
    assert not WaitingRoom.objects.get(pk=concert.pk).admission_paused


def test_each_control_is_one_logged_service_call(
    busy_sale, operator_client, django_capture_on_commit_callbacks
):
    concert, _, waiting = busy_sale
    control = url(concert, "control/")

    def send(**form):
        with django_capture_on_commit_callbacks(execute=True):  # as after each commit
            operator_client.post(control, form)

    send(action="pause")
    assert WaitingRoom.objects.get(pk=concert.pk).admission_paused
    send(action="resume")
    send(action="capacity", max_active="3")  # one more turn: the next fan is admitted
    send(action="admit", count="1")  # and the last one, beyond capacity
    room = WaitingRoom.objects.get(pk=concert.pk)
    assert (room.max_active, room.admission_paused) == (3, False)
    assert QueueToken.objects.filter(concert=concert, status="waiting").count() == 0
    # Ending every turn needs the confirmation box.
    refused = operator_client.post(control, {"action": "end_all"}, follow=True)
    assert "Tick the box" in refused.content.decode()
    assert QueueToken.objects.filter(concert=concert, status="active").count() == 4
    operator_client.post(control, {"action": "end_all", "confirm": "yes"})
    assert QueueToken.objects.filter(concert=concert, status="active").count() == 0
    log = list(OperatorAction.objects.filter(concert_id=concert.id).order_by("id"))
    assert [a.action for a in log] == [
        "pause", "resume", "capacity", "admit_next", "end_all_turns",
    ]  # fmt: skip
    assert {a.operator_name for a in log} == {"op"}
    assert log[2].details == {"from": 2, "to": 3}
    assert log[4].details == {"ended": 4}
    assert "end_all_turns" in operator_client.get(url(concert, "live/")).content.decode()


def test_a_bad_capacity_is_refused_and_nothing_is_logged(busy_sale, operator_client):
    concert, _, _ = busy_sale
    answer = operator_client.post(
        url(concert, "control/"), {"action": "capacity", "max_active": "-5"}, follow=True
    )
    assert "Capacity is a whole number" in answer.content.decode()
    assert WaitingRoom.objects.get(pk=concert.pk).max_active == 2
    assert not OperatorAction.objects.exists()


def test_the_queue_panel_actions_are_logged_too(busy_sale, operator_client):
    concert, _, _ = busy_sale
    operator_client.post(
        "/admin/queueing/waitingroom/",
        {"action": "pause_admission", "_selected_action": [concert.id]},
    )
    assert OperatorAction.objects.get().action == "pause"


def test_the_audit_log_is_read_only_and_append_only(busy_sale, operator_client):
    concert, _, _ = busy_sale
    operator_client.post(url(concert, "control/"), {"action": "pause"})
    entry = OperatorAction.objects.get()
    page = operator_client.get("/admin/config/operatoraction/")
    assert page.status_code == 200 and "pause" in page.content.decode()
    assert operator_client.get("/admin/config/operatoraction/add/").status_code == 403
    with pytest.raises(IntegrityError), transaction.atomic():
        OperatorAction.objects.filter(pk=entry.pk).update(action="nothing happened")
    with pytest.raises(IntegrityError), transaction.atomic():
        OperatorAction.objects.filter(pk=entry.pk).delete()


def test_the_dashboard_shows_a_scheduled_sale_and_its_pre_queue(concert, operator_client):
    starts = timezone.now() + timedelta(minutes=10)
    WaitingRoom.objects.filter(pk=concert.pk).update(sale_starts_at=starts, pre_queue_minutes=30)
    token_client(UserFactory()).post(f"/api/v1/concerts/{concert.id}/queue")
    page = operator_client.get(url(concert)).content.decode()
    assert "1 fan in the pre-queue" in page


def test_admit_helper_fans_count_as_active(concert, schedule):
    admit(UserFactory(), concert.id)
    board = sale_dashboard(concert_id=concert.id, now=timezone.now())
    assert board.room.active == 1


def test_the_embedded_databases_series_count_as_postgresql_does(busy_sale):
    """The embedded SQLite's dashboard series (counted in Python) agree with
    PostgreSQL's one query, on the same rows."""
    from queueing import selectors as queue_selectors

    concert, _, _ = busy_sale
    now = timezone.now()
    assert queue_selectors._room_series_portable(
        concert_id=concert.id, now=now
    ) == queue_selectors._room_series(concert_id=concert.id, now=now)
