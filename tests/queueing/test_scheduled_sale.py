"""Scheduled sales (issue 16): the line opens with a pre-queue window before the
on-sale time; at the start, one job puts the whole pre-queue in a uniformly random
order ahead of everyone who lines up after."""

import hashlib
import math
from datetime import datetime, timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from queueing import selectors, services, tasks
from queueing.exceptions import QueueNotOpen, QueueTokenWaiting
from queueing.models import QueueToken, WaitingRoom
from tests.conftest import token_client
from tests.factories import ConcertFactory, UserFactory

pytestmark = pytest.mark.django_db

START = timezone.now().replace(microsecond=0) + timedelta(hours=1)


@pytest.fixture
def sale():
    """A concert on sale at START, with a 30-minute pre-queue, and room for 5 at once."""
    concert = ConcertFactory()
    WaitingRoom.objects.filter(pk=concert.pk).update(
        sale_starts_at=START, pre_queue_minutes=30, max_active=5
    )
    return concert


def line_up(concert, at, user=None):
    return services.queue_token_issue(user=user or UserFactory(), concert_id=concert.id, now=at)[0]


def room(concert) -> WaitingRoom:
    return WaitingRoom.objects.get(pk=concert.pk)


def line(concert) -> list[QueueToken]:
    """The waiting line, front first."""
    return list(QueueToken.objects.filter(concert=concert, status="waiting").order_by("id"))


def test_before_the_window_lining_up_is_refused_with_the_on_sale_time(sale):
    with pytest.raises(QueueNotOpen) as refused:
        line_up(sale, START - timedelta(minutes=31))
    assert refused.value.http_status == 409
    assert refused.value.details == {
        "sale_starts_at": START.isoformat(),
        "line_opens_at": (START - timedelta(minutes=30)).isoformat(),
    }
    assert not QueueToken.objects.filter(concert=sale).exists()


def test_the_api_refuses_early_fans_with_a_clear_error(sale):
    answer = token_client(UserFactory()).post(f"/api/v1/concerts/{sale.id}/queue")
    assert answer.status_code == 409
    error = answer.json()["error"]
    assert error["code"] == "queue_not_open"
    assert error["details"]["sale_starts_at"] == START.isoformat()


def test_in_the_window_a_fan_gets_a_pre_queue_token_without_a_position(sale):
    token = line_up(sale, START - timedelta(minutes=10))
    assert token.status == "pre_queue"
    view = selectors.queue_token_view(token=token, now=START - timedelta(minutes=10))
    assert (view.status, view.position, view.estimated_wait_seconds) == ("pre_queue", None, None)
    assert view.sale_starts_at == START


def test_the_api_says_pre_queue_with_the_on_sale_time_and_no_position(sale):
    WaitingRoom.objects.filter(pk=sale.pk).update(
        sale_starts_at=timezone.now() + timedelta(minutes=10)
    )
    fan = UserFactory()
    body = token_client(fan).post(f"/api/v1/concerts/{sale.id}/queue").json()
    assert body["status"] == "pre_queue"
    assert body["position"] is None and body["estimated_wait_seconds"] is None
    assert body["sale_starts_at"] is not None
    assert body["poll_after_seconds"] == selectors.PRE_QUEUE_FAR_POLL


def test_a_pre_queue_token_does_not_pass_the_gate(sale):
    fan = UserFactory()
    token = line_up(sale, START - timedelta(minutes=5), user=fan)
    with pytest.raises(QueueTokenWaiting):
        services.queue_gate_pass(
            key=token.key, user=fan, concert_id=sale.id, now=START - timedelta(minutes=4)
        )


def test_a_fan_still_has_one_token_in_the_pre_queue(sale):
    fan = UserFactory()
    first = line_up(sale, START - timedelta(minutes=20), user=fan)
    again, created = services.queue_token_issue(
        user=fan, concert_id=sale.id, now=START - timedelta(minutes=1)
    )
    assert (again.pk, created) == (first.pk, False)
    with pytest.raises(IntegrityError), transaction.atomic():  # and the database says so
        QueueToken.objects.create(
            concert=sale, user=fan, status="waiting", created_at=START, last_seen_at=START
        )


def test_a_fan_can_leave_the_pre_queue(sale):
    token = line_up(sale, START - timedelta(minutes=5))
    services.queue_token_leave(token=token, now=START - timedelta(minutes=4))
    assert QueueToken.objects.get(pk=token.pk).status == "left"
    assert services.queue_sale_start(concert_id=sale.id, now=START) == 0


def test_the_start_puts_the_pre_queue_in_its_recorded_random_order_ahead_of_later_fans(sale):
    early = [line_up(sale, START - timedelta(minutes=30 - i)) for i in range(12)]
    assert tasks.start_sales.run() == 0  # the job finds nothing due before the time
    assert services.queue_sales_start_due(now=START) == 1
    later = [line_up(sale, START + timedelta(seconds=i + 1)) for i in range(4)]

    started = room(sale)
    assert (started.sale_started_at, started.pre_queue_size) == (START, 12)
    assert len(started.shuffle_seed) == 64  # 256 bits from the CSPRNG, kept for audit
    everyone = QueueToken.objects.filter(concert=sale).order_by("id")
    # The first five were admitted at once (capacity), the rest wait; in line order:
    order = [t.user_id for t in everyone]
    expected = services.pre_queue_order(
        seed=started.shuffle_seed, user_ids=[t.user_id for t in early]
    )
    assert order == expected + [t.user_id for t in later]  # the audit recomputes it
    assert [t.status for t in everyone] == ["active"] * 5 + ["waiting"] * 11
    positions = [selectors.queue_position(token=t) for t in line(sale)]
    assert positions == list(range(1, 12))
    assert {t.key for t in everyone} == {t.key for t in early + later}  # fans keep their keys


def test_a_fan_arriving_after_a_late_start_job_still_stands_behind_the_pre_queue(sale):
    early = [line_up(sale, START - timedelta(minutes=5)) for _ in range(8)]
    # The beat job has not run (it is late), and a fan lines up after the start:
    late = line_up(sale, START + timedelta(seconds=3))
    assert room(sale).sale_started_at == START + timedelta(seconds=3)  # started by the line-up
    assert late.status == "waiting"
    assert selectors.queue_position(token=late) == 8 - 5 + 1  # 5 admitted, 3 ahead
    assert late.pk > max(QueueToken.objects.filter(key__in=[t.key for t in early]).values_list(
        "id", flat=True
    ))  # fmt: skip


def test_the_start_happens_once(sale):
    for _ in range(3):
        line_up(sale, START - timedelta(minutes=1))
    assert services.queue_sale_start(concert_id=sale.id, now=START) == 3
    seed = room(sale).shuffle_seed
    ids = sorted(QueueToken.objects.filter(concert=sale).values_list("id", flat=True))
    assert services.queue_sale_start(concert_id=sale.id, now=START + timedelta(seconds=1)) is None
    assert services.queue_sales_start_due(now=START + timedelta(seconds=2)) == 0
    assert room(sale).shuffle_seed == seed
    assert sorted(QueueToken.objects.filter(concert=sale).values_list("id", flat=True)) == ids


def test_a_sale_with_nobody_in_the_pre_queue_starts_empty_and_opens_the_line(sale):
    assert services.queue_sale_start(concert_id=sale.id, now=START) == 0
    assert line_up(sale, START + timedelta(seconds=1)).status == "active"


def test_without_a_window_the_line_opens_at_the_on_sale_time():
    concert = ConcertFactory()
    WaitingRoom.objects.filter(pk=concert.pk).update(sale_starts_at=START)
    with pytest.raises(QueueNotOpen):
        line_up(concert, START - timedelta(seconds=1))
    assert line_up(concert, START).status in ("waiting", "active")


def test_a_concert_without_an_on_sale_time_is_first_come_first_served():
    concert = ConcertFactory()
    assert line_up(concert, timezone.now()).status == "active"


def test_pre_queue_polls_are_spread_after_the_start(sale, settings):
    settings.QUEUE_POLL_BUDGET_PER_SECOND = 100
    keys = [hashlib.sha256(str(i).encode()).hexdigest()[:43] for i in range(2000)]
    far = [
        selectors.pre_queue_poll_after(
            key=k, sale_starts_at=START, now=START - timedelta(minutes=20), pre_queue_size=2000
        )
        for k in keys
    ]
    assert set(far) == {selectors.PRE_QUEUE_FAR_POLL}  # the page counts down meanwhile
    near = [
        selectors.pre_queue_poll_after(
            key=k, sale_starts_at=START, now=START - timedelta(seconds=5), pre_queue_size=2000
        )
        for k in keys
    ]
    spread = math.ceil(2000 / 100)  # the whole pre-queue's first polls fit the budget
    assert min(near) >= 5 and max(near) < 5 + spread
    per_second = [near.count(5 + s) for s in range(spread)]
    assert max(per_second) <= 2 * 2000 / spread  # no second gets a herd
    again = selectors.pre_queue_poll_after(
        key=keys[0], sale_starts_at=START, now=START - timedelta(seconds=5), pre_queue_size=2000
    )
    assert again == near[0]  # a fan's slot is theirs: asking again does not move it


def test_the_concert_api_shows_the_sale_schedule(sale):
    body = token_client(UserFactory()).get(f"/api/v1/concerts/{sale.id}").json()
    assert datetime.fromisoformat(body["sale_starts_at"]) == START
    assert datetime.fromisoformat(body["line_opens_at"]) == START - timedelta(minutes=30)


def test_operators_schedule_a_sale_through_the_api_and_it_is_logged(concert):
    from django.contrib.auth import get_user_model

    from config.models import OperatorAction

    staff = get_user_model().objects.create_user("ops", password="pw-ops-123456", is_staff=True)
    client = token_client(staff)
    url = f"/api/v1/concerts/{concert.id}/sale"
    answer = client.put(
        url, {"sale_starts_at": START.isoformat(), "pre_queue_minutes": 15}, format="json"
    )
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert datetime.fromisoformat(body["sale_starts_at"]) == START
    assert datetime.fromisoformat(body["line_opens_at"]) == START - timedelta(minutes=15)
    assert (body["sale_started_at"], body["pre_queue_size"]) == (None, 0)
    assert room(concert).pre_queue_minutes == 15
    log = OperatorAction.objects.get()
    assert (log.operator_name, log.action, log.concert_id) == ("ops", "schedule_sale", concert.id)
    # Bad input is a clear 400, and nothing is written.
    bad = client.put(url, {"sale_starts_at": "soon", "pre_queue_minutes": -1}, format="json")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "validation_error"
    assert OperatorAction.objects.count() == 1
    # Fans may not; once the sale has started, nobody may.
    fan = token_client(UserFactory())
    assert fan.put(url, {"sale_starts_at": None}, format="json").status_code == 403
    services.queue_sale_start(concert_id=concert.id, now=START)
    late = client.put(url, {"sale_starts_at": None}, format="json")
    assert late.status_code == 409 and late.json()["error"]["code"] == "sale_already_started"
    assert client.get(url).json()["sale_started_at"] is not None
