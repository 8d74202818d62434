import pytest

from queueing.models import QueueToken, WaitingRoom
from tests.queueing.conftest import line_up, set_capacity

pytestmark = pytest.mark.django_db


def test_operator_pauses_resumes_and_admits_next_n(
    operator_client, concert, now, django_capture_on_commit_callbacks
):
    set_capacity(concert, 0)
    tokens = line_up(concert, 3, now)
    url = "/admin/queueing/waitingroom/"
    operator_client.post(url, {"action": "pause_admission", "_selected_action": [concert.id]})
    assert WaitingRoom.objects.get(pk=concert.id).admission_paused
    with django_capture_on_commit_callbacks(execute=True):
        operator_client.post(url, {"action": "resume_admission", "_selected_action": [concert.id]})
    assert not WaitingRoom.objects.get(pk=concert.id).admission_paused
    operator_client.post(
        url, {"action": "admit_next_n", "_selected_action": [concert.id], "count": "2"}
    )
    statuses = [QueueToken.objects.get(pk=t.pk).status for t in tokens]
    assert statuses == ["active", "active", "waiting"]
    assert operator_client.get(url).status_code == 200


def test_operator_ends_tokens_and_the_freed_slots_refill_at_once(
    operator_client, concert, now, django_capture_on_commit_callbacks
):
    set_capacity(concert, 2)
    first, second, third = line_up(concert, 3, now)
    assert QueueToken.objects.get(pk=third.pk).status == "waiting"
    with django_capture_on_commit_callbacks(execute=True):
        response = operator_client.post(
            "/admin/queueing/queuetoken/",
            {"action": "end_tokens", "_selected_action": [first.pk, second.pk]},
            follow=True,
        )
    assert [str(m) for m in response.context["messages"]] == ["Ended 2 token(s)."]
    ended = QueueToken.objects.get(pk=first.pk)
    assert (ended.status, ended.end_reason) == ("ended", "operator")
    assert QueueToken.objects.get(pk=third.pk).status == "active"


def test_raising_capacity_in_the_queue_panel_admits_at_once(
    operator_client, concert, now, django_capture_on_commit_callbacks
):
    set_capacity(concert, 1)
    tokens = line_up(concert, 4, now)
    with django_capture_on_commit_callbacks(execute=True):
        operator_client.post(
            "/admin/queueing/waitingroom/",
            {
                "form-TOTAL_FORMS": "1",
                "form-INITIAL_FORMS": "1",
                "form-0-concert": str(concert.id),
                "form-0-max_active": "3",
                "_save": "Save",
            },
        )
    assert WaitingRoom.objects.get(pk=concert.id).max_active == 3
    statuses = [QueueToken.objects.get(pk=t.pk).status for t in tokens]
    assert statuses == ["active", "active", "active", "waiting"]  # no beat tick needed


def test_operator_schedules_a_sale_and_its_schedule_is_read_only_once_started(
    operator_client, concert
):
    from datetime import timedelta

    from django.utils import timezone

    from queueing import services
    from queueing.exceptions import SaleAlreadyStarted

    url = f"/admin/queueing/waitingroom/{concert.id}/change/"
    starts = timezone.localtime(timezone.now() + timedelta(hours=2)).replace(microsecond=0)
    response = operator_client.post(
        url,
        {
            "max_active": "50",
            "sale_starts_at_0": starts.strftime("%Y-%m-%d"),
            "sale_starts_at_1": starts.strftime("%H:%M:%S"),
            "pre_queue_minutes": "30",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    room = WaitingRoom.objects.get(pk=concert.id)
    assert (room.sale_starts_at, room.pre_queue_minutes, room.max_active) == (starts, 30, 50)

    services.queue_sale_start(concert_id=concert.id, now=starts)
    page = operator_client.get(url).content.decode()
    assert 'name="sale_starts_at_0"' not in page  # history now: shown, not editable
    assert WaitingRoom.objects.get(pk=concert.id).shuffle_seed in page  # the audit record
    with pytest.raises(SaleAlreadyStarted):
        services.waiting_room_update(
            concert_id=concert.id, max_active=50, admission_paused=False,
            sale_starts_at=starts + timedelta(hours=1), now=starts,
        )  # fmt: skip
