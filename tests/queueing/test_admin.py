import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from queueing.models import QueueToken, WaitingRoom
from tests.queueing.conftest import line_up, set_capacity

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator_client():
    operator = get_user_model().objects.create_superuser("op", "op@example.com", "pw-123456")
    client = Client()
    client.force_login(operator)
    return client


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
