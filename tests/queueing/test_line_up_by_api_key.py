"""The line-up that authenticates the fan's API token in its own statement
(queueing.services.queue_token_issue_by_api_key, the fast lane's line-up): the same
token and place as queue_token_issue for the same fan, and nothing written for a key
that names no active fan. DRF's rule (config.auth.active_user_sql): the key exists
and its user is active."""

import pytest
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.utils import timezone
from rest_framework.authtoken.models import Token

from queueing import services
from queueing.exceptions import ConcertNotFound, QueueNotOpen
from queueing.models import QueueBucket, QueueToken, WaitingRoom
from tests.factories import ConcertFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)  # the statement commits by itself


@pytest.fixture
def room():
    concert = ConcertFactory()
    WaitingRoom.objects.filter(pk=concert.pk).update(max_active=0)
    return concert


def api_key(**user) -> str:
    return Token.objects.create(user=UserFactory(**user)).key


def test_a_key_lines_its_fan_up_at_the_back_and_asking_again_keeps_the_place(room):
    ahead = services.queue_token_issue(user=UserFactory(), concert_id=room.id, now=timezone.now())
    key = api_key()
    token, created = services.queue_token_issue_by_api_key(
        api_key=key, concert_id=room.id, now=timezone.now()
    )
    assert created and token.user_id == Token.objects.get(key=key).user_id
    assert token.pk > ahead[0].pk and token.status == QueueToken.Status.WAITING
    assert token.position_at_read == 2
    again, created = services.queue_token_issue_by_api_key(
        api_key=key, concert_id=room.id, now=timezone.now()
    )
    assert not created and again.pk == token.pk
    assert QueueToken.objects.filter(concert=room).count() == 2
    waiting = QueueBucket.objects.filter(concert_id=room.id).values_list("waiting", flat=True)
    assert sum(waiting) == 2


@pytest.mark.parametrize("case", ["unknown", "inactive", "deleted"])
def test_a_key_that_names_no_active_fan_writes_nothing(room, case):
    key = "0" * 40 if case == "unknown" else api_key(is_active=case != "inactive")
    if case == "deleted":
        Token.objects.filter(key=key).delete()
    assert (
        services.queue_token_issue_by_api_key(api_key=key, concert_id=room.id, now=timezone.now())
        is None
    )
    assert not QueueToken.objects.filter(concert=room).exists()
    assert not QueueBucket.objects.filter(concert_id=room.id).exists()


def test_control_the_same_fan_by_user_is_lined_up(room):
    """The control for the inactive case: the statement by user id does not
    authenticate (its callers did), so an inactive user is lined up."""
    fan = UserFactory(is_active=False)
    token, created = services.queue_token_issue(user=fan, concert_id=room.id, now=timezone.now())
    assert created and token.user_id == fan.pk


def test_a_user_deactivated_after_the_key_was_cached_is_refused(room):
    from config.auth import credentials

    key = api_key()
    credentials(key)  # cached
    get_user_model().objects.filter(auth_token__key=key).update(is_active=False)  # no signal
    assert (
        services.queue_token_issue_by_api_key(api_key=key, concert_id=room.id, now=timezone.now())
        is None
    )


def test_no_such_concert_is_not_found_for_a_fan_and_unauthenticated_otherwise():
    """As DRF answers: authentication first, so a bad key is refused (None: a 401)
    whatever the concert, and a good one finds no concert."""
    key = api_key()
    now = timezone.now()
    for concert_id in (10**9, 2**63, 0):
        with pytest.raises(ConcertNotFound):
            services.queue_token_issue_by_api_key(api_key=key, concert_id=concert_id, now=now)
        assert (
            services.queue_token_issue_by_api_key(api_key="0" * 40, concert_id=concert_id, now=now)
            is None
        )
    assert not QueueToken.objects.exists()


def test_a_sale_not_open_yet_is_refused_for_a_fan(room):
    now = timezone.now()
    WaitingRoom.objects.filter(pk=room.pk).update(
        sale_starts_at=now + timezone.timedelta(days=1), pre_queue_minutes=10
    )
    with pytest.raises(QueueNotOpen):
        services.queue_token_issue_by_api_key(api_key=api_key(), concert_id=room.id, now=now)
    refused = services.queue_token_issue_by_api_key(api_key="0" * 40, concert_id=room.id, now=now)
    assert refused is None


def test_inside_a_transaction_the_fan_is_authenticated_first(room):
    key = api_key()
    with transaction.atomic():
        assert connection.in_atomic_block
        token, created = services.queue_token_issue_by_api_key(
            api_key=key, concert_id=room.id, now=timezone.now()
        )
        assert (
            services.queue_token_issue_by_api_key(
                api_key="0" * 40, concert_id=room.id, now=timezone.now()
            )
            is None
        )
    assert created and token.user_id == Token.objects.get(key=key).user_id
