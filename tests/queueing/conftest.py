import pytest
from django.db import connection
from django.utils import timezone

from queueing import services
from queueing.models import QueueBucket, WaitingRoom
from tests.factories import ConcertFactory, UserFactory


@pytest.fixture
def concert(db):
    return ConcertFactory()


@pytest.fixture
def now():
    return timezone.now()


@pytest.fixture
def room(concert):
    return services.waiting_room_get(concert_id=concert.id)


def set_capacity(concert, max_active, paused=False):
    WaitingRoom.objects.update_or_create(
        pk=concert.id, defaults={"max_active": max_active, "admission_paused": paused}
    )


def counted(concert) -> int:
    """The line's length as its buckets count it."""
    return sum(QueueBucket.objects.filter(concert=concert).values_list("waiting", flat=True))


def line_up(concert, n, now, **kw):
    return [
        services.queue_token_issue(user=UserFactory(), concert_id=concert.id, now=now, **kw)[0]
        for _ in range(n)
    ]


ADMITTED, WAITING = 20_000, 30_000  # the shape of a sale well under way


@pytest.fixture
def sale_under_way(db):
    """A concert with 20,000 fans admitted so far (their turns over, or on) and 30,000
    waiting behind them, made by SQL (fans' ids taken past the sequence), analysed."""
    concert = ConcertFactory()
    with connection.cursor() as cursor:
        cursor.execute("SELECT COALESCE(MAX(id), 0) FROM auth_user")
        (first,) = cursor.fetchone()
        first += 1
        last = first + ADMITTED + WAITING - 1
        cursor.execute(
            "INSERT INTO auth_user (id, password, is_superuser, username, first_name,"
            " last_name, email, is_staff, is_active, date_joined)"
            " SELECT g, '!', false, 'plan' || g, '', '', '', false, true, now()"
            " FROM generate_series(%s::bigint, %s::bigint) g",
            [first, last],
        )
        # In line order: the fans admitted so far (their turns over, or on), then the line.
        cursor.execute(
            "INSERT INTO queueing_queuetoken (key, concert_id, user_id, status, created_at,"
            " last_seen_at, admitted_at, active_until, ended_at, end_reason)"
            " SELECT md5(g::text) || md5(random()::text), %s, g,"
            " CASE WHEN g %% 2 = 0 THEN 'ended' ELSE 'active' END, now(), now(), now(),"
            " now() + interval '1 hour', CASE WHEN g %% 2 = 0 THEN now() END, ''"
            " FROM generate_series(%s::bigint, %s::bigint) g ORDER BY g",
            [concert.pk, first, first + ADMITTED - 1],
        )
        cursor.execute(
            "INSERT INTO queueing_queuetoken (key, concert_id, user_id, status, created_at,"
            " last_seen_at, end_reason)"
            " SELECT md5(g::text) || md5(random()::text), %s, g, 'waiting', now(),"
            " now() + interval '1 hour', ''"
            " FROM generate_series(%s::bigint, %s::bigint) g ORDER BY g",
            [concert.pk, first + ADMITTED, last],
        )
        cursor.execute("ANALYZE queueing_queuetoken")
    return concert
