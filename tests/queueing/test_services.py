from datetime import timedelta

import pytest
from django.test import override_settings

from queueing import selectors, services
from queueing.exceptions import (
    ConcertNotFound,
    QueueTokenExpired,
    QueueTokenInvalid,
    QueueTokenMissing,
    QueueTokenWaiting,
    QueueTokenWrongConcert,
)
from queueing.models import QueueBucket, QueueToken
from tests.factories import ConcertFactory, UserFactory
from tests.queueing.conftest import counted, line_up, set_capacity

pytestmark = pytest.mark.django_db
Status = QueueToken.Status


def refreshed(token):
    token.refresh_from_db()
    return token


def test_first_fan_with_free_capacity_is_admitted_at_once(concert, fan, now):
    token, created = services.queue_token_issue(user=fan, concert_id=concert.id, now=now)
    assert created
    assert token.status == Status.ACTIVE
    assert token.active_until == now + timedelta(seconds=600)


def test_asking_again_returns_the_same_token_and_place(concert, now):
    set_capacity(concert, 0)
    first = line_up(concert, 3, now)
    again, created = services.queue_token_issue(user=first[1].user, concert_id=concert.id, now=now)
    assert not created
    assert again.pk == first[1].pk and again.key == first[1].key
    assert selectors.queue_position(token=again) == 2
    assert QueueToken.objects.count() == 3


def test_positions_follow_issue_order(concert, now):
    set_capacity(concert, 0)
    tokens = line_up(concert, 5, now)
    assert [selectors.queue_position(token=t) for t in tokens] == [1, 2, 3, 4, 5]


def test_leaving_moves_everyone_behind_up_by_one(concert, now):
    set_capacity(concert, 0)
    tokens = line_up(concert, 4, now)
    services.queue_token_leave(token=tokens[1], now=now)
    assert refreshed(tokens[1]).status == Status.LEFT
    assert [selectors.queue_position(token=refreshed(t)) for t in tokens] == [1, None, 2, 3]


def test_positions_stay_exact_across_bucket_boundaries(concert, now, monkeypatch):
    import queueing.models
    import queueing.selectors
    import queueing.services

    for module in (queueing.models, queueing.selectors, queueing.services):
        monkeypatch.setattr(module, "BUCKET_SIZE", 4)
    set_capacity(concert, 0)
    other = ConcertFactory()
    set_capacity(other, 0)
    tokens = []
    for i in range(15):
        tokens += line_up(concert, 1, now)
        if i % 3 == 0:
            line_up(other, 1, now)  # interleave another concert's ids
    for leaver in (tokens[2], tokens[9]):
        services.queue_token_leave(token=leaver, now=now)
    services.queue_admit_next(concert_id=concert.id, now=now, count=3)
    waiting = list(QueueToken.objects.filter(concert=concert, status=Status.WAITING).order_by("id"))
    assert [selectors.queue_position(token=t) for t in waiting] == list(range(1, 11))


def test_admission_is_fifo_and_capacity_bound(concert, now):
    set_capacity(concert, 0)
    tokens = line_up(concert, 10, now)
    set_capacity(concert, 3)
    admitted = services.queue_admit_next(concert_id=concert.id, now=now)
    assert admitted == [t.pk for t in tokens[:3]]
    assert services.queue_admit_next(concert_id=concert.id, now=now) == []
    assert selectors.queue_position(token=refreshed(tokens[3])) == 1


def test_paused_room_admits_nobody_until_resumed(concert, now, django_capture_on_commit_callbacks):
    set_capacity(concert, 5, paused=True)
    token = line_up(concert, 1, now)[0]
    assert token.status == Status.WAITING
    assert services.queue_admit_next(concert_id=concert.id, now=now) == []
    with django_capture_on_commit_callbacks(execute=True):
        services.waiting_room_update(
            concert_id=concert.id, max_active=5, admission_paused=False, now=now
        )
    assert refreshed(token).status == Status.ACTIVE


def test_operator_admit_next_n_goes_beyond_capacity_in_order(concert, now):
    set_capacity(concert, 0)
    tokens = line_up(concert, 5, now)
    assert services.queue_admit_next(concert_id=concert.id, now=now, count=2) == [
        tokens[0].pk,
        tokens[1].pk,
    ]


def test_admission_stamps_never_go_back_when_a_run_brings_an_older_clock(concert, now):
    """Two runs, serialised on the room, whose callers read the clock in the other
    order: the later run's fans are stamped no earlier than the first run's, so
    admitted_at follows admission (and line-up) order, and no turn is cut short."""
    set_capacity(concert, 0)
    tokens = line_up(concert, 4, now)
    later_clock, earlier_clock = now + timedelta(seconds=2), now + timedelta(seconds=1)
    services.queue_admit_next(concert_id=concert.id, now=later_clock, count=2)
    services.queue_admit_next(concert_id=concert.id, now=earlier_clock, count=2)
    stamps = [refreshed(t).admitted_at for t in tokens]
    assert stamps == sorted(stamps) == [later_clock] * 4
    assert all(refreshed(t).active_until > later_clock for t in tokens)


LEAVES = {  # by the token (ORM), and by its secret (one statement: the API's and the page's)
    "token": lambda token, now: services.queue_token_leave(token=token, now=now),
    "secret": lambda token, now: services.queue_leave(
        key=token.key, user_id=token.user_id, now=now
    ),
}


@pytest.mark.parametrize("by", sorted(LEAVES))
def test_only_an_ended_turn_runs_an_admission_a_fan_leaving_the_line_does_not(
    by, concert, now, django_capture_on_commit_callbacks, monkeypatch
):
    set_capacity(concert, 1)
    first, _, third = line_up(concert, 3, now)
    runs = []
    monkeypatch.setattr(services, "_admit_soon", lambda **kw: runs.append(kw))
    with django_capture_on_commit_callbacks(execute=True):
        LEAVES[by](third, now)  # waiting: no slot freed
    assert runs == []
    with django_capture_on_commit_callbacks(execute=True):
        LEAVES[by](first, now)  # active: a slot to refill
    assert runs == [{"concert_id": concert.id, "now": now}]


@pytest.mark.parametrize("by", sorted(LEAVES))
def test_a_leaving_active_fan_frees_the_slot_right_after_commit(
    by, concert, now, django_capture_on_commit_callbacks
):
    set_capacity(concert, 1)
    first, second = line_up(concert, 2, now)
    assert (first.status, second.status) == (Status.ACTIVE, Status.WAITING)
    with django_capture_on_commit_callbacks() as callbacks:
        LEAVES[by](first, now)
    assert refreshed(first).status == Status.LEFT
    assert refreshed(second).status == Status.WAITING  # not before commit
    assert counted(concert) == 1  # an admitted fan was no longer counted in line
    for callback in callbacks:
        callback()
    assert refreshed(second).status == Status.ACTIVE
    assert counted(concert) == 0


def test_ending_a_token_admits_the_next_fan(concert, now, django_capture_on_commit_callbacks):
    set_capacity(concert, 1)
    first, second = line_up(concert, 2, now)
    with django_capture_on_commit_callbacks(execute=True):
        services.queue_turn_end(
            key=first.key, user=first.user, concert_id=concert.id, now=now, reason="paid"
        )
    assert refreshed(first).status == Status.ENDED
    assert refreshed(first).end_reason == "paid"
    assert refreshed(second).status == Status.ACTIVE


def test_gate_refuses_an_expired_active_token_before_any_job_runs(concert, fan, now):
    token, _ = services.queue_token_issue(user=fan, concert_id=concert.id, now=now)
    later = token.active_until
    services.queue_gate_pass(
        key=token.key, user=fan, concert_id=concert.id, now=later - timedelta(seconds=1)
    )
    with pytest.raises(QueueTokenExpired):
        services.queue_gate_pass(key=token.key, user=fan, concert_id=concert.id, now=later)
    assert refreshed(token).status == Status.ACTIVE  # nothing swept it; refused lazily


def test_an_expired_slot_is_refilled_lazily_by_the_next_admission(concert, now):
    set_capacity(concert, 1)
    first, second = line_up(concert, 2, now)
    later = first.active_until + timedelta(seconds=1)
    services.queue_token_touch(token=second, now=later - timedelta(seconds=10))  # still polling
    assert services.queue_admit_next(concert_id=concert.id, now=later) == [second.pk]


def extend(token, fan, concert, *, until, now):
    return services.queue_turn_extend(
        key=token.key, user=fan, concert_id=concert.id, until=until, now=now
    )


def test_a_hold_extends_an_active_turn_to_the_hold_end(concert, fan, now):
    token, _ = services.queue_token_issue(user=fan, concert_id=concert.id, now=now)
    hold_end = token.active_until + timedelta(minutes=3)
    extend(token, fan, concert, until=hold_end, now=now)
    assert refreshed(token).active_until == hold_end
    services.queue_gate_pass(
        key=token.key, user=fan, concert_id=concert.id, now=hold_end - timedelta(seconds=1)
    )
    # An earlier hold end never shortens it.
    extend(token, fan, concert, until=now, now=now)
    assert refreshed(token).active_until == hold_end
    assert services.queue_expire_stale(now=hold_end - timedelta(seconds=1))["active_expired"] == 0


def test_expiry_job_ends_lapsed_active_tokens_and_admits_the_next(
    concert, now, django_capture_on_commit_callbacks
):
    set_capacity(concert, 1)
    first, second = line_up(concert, 2, now)
    later = first.active_until
    # the waiting fan keeps polling
    services.queue_token_touch(token=second, now=later - timedelta(seconds=30))
    with django_capture_on_commit_callbacks(execute=True):
        result = services.queue_expire_stale(now=later)
    assert result == {"active_expired": 1, "idle_expired": 0}
    assert refreshed(first).status == Status.EXPIRED
    assert refreshed(second).status == Status.ACTIVE
    assert services.queue_expire_stale(now=later) == {"active_expired": 0, "idle_expired": 0}


@override_settings(QUEUE_WAITING_IDLE_TIMEOUT=300)
def test_abandoned_waiting_tokens_are_dropped_and_the_next_fans_admitted(concert, now):
    set_capacity(concert, 0)
    abandoned, present_a, present_b = line_up(concert, 3, now)
    later = now + timedelta(seconds=301)
    for token in (present_a, present_b):
        services.queue_token_touch(token=token, now=later - timedelta(seconds=10))
    # Lazily: the abandoned token is already not admissible, nor reported as waiting.
    assert selectors.effective_status(refreshed(abandoned), now=later) == Status.EXPIRED
    set_capacity(concert, 1)
    assert services.queue_admit_next(concert_id=concert.id, now=later) == [present_a.pk]
    result = services.queue_expire_stale(now=later)
    assert result["idle_expired"] == 1
    assert refreshed(abandoned).end_reason == "idle"
    assert selectors.queue_position(token=refreshed(present_b)) == 1
    assert sum(QueueBucket.objects.filter(concert=concert).values_list("waiting", flat=True)) == 1


def test_a_lapsed_token_is_replaced_at_the_back_of_the_line(concert, now):
    set_capacity(concert, 1)
    first, second = line_up(concert, 2, now)
    later = first.active_until + timedelta(seconds=5)
    services.queue_token_touch(token=second, now=later)
    new, created = services.queue_token_issue(user=first.user, concert_id=concert.id, now=later)
    assert created and new.pk != first.pk
    assert refreshed(first).status == Status.EXPIRED
    assert refreshed(second).status == Status.ACTIVE  # the freed slot went to the fan ahead
    assert new.status == Status.WAITING


def test_issue_for_an_unknown_concert_is_not_found(fan, now):
    with pytest.raises(ConcertNotFound):
        services.queue_token_issue(user=fan, concert_id=999_999, now=now)


def test_admit_all_runs_every_unpaused_concert(now):
    a, b, c = ConcertFactory(), ConcertFactory(), ConcertFactory()
    for concert in (a, b, c):
        set_capacity(concert, 0)
        line_up(concert, 2, now)
    set_capacity(a, 1)
    set_capacity(b, 5)
    set_capacity(c, 5, paused=True)
    assert services.queue_admit_all(now=now) == 3


class TestGate:
    def test_missing_token(self, concert, fan, now):
        with pytest.raises(QueueTokenMissing):
            services.queue_gate_pass(key=None, user=fan, concert_id=concert.id, now=now)

    def test_forged_token(self, concert, fan, now):
        with pytest.raises(QueueTokenInvalid):
            services.queue_gate_pass(key="forged", user=fan, concert_id=concert.id, now=now)

    def test_someone_elses_token(self, concert, fan, now):
        token, _ = services.queue_token_issue(user=fan, concert_id=concert.id, now=now)
        with pytest.raises(QueueTokenInvalid):
            services.queue_gate_pass(
                key=token.key, user=UserFactory(), concert_id=concert.id, now=now
            )

    def test_waiting_token(self, concert, now):
        set_capacity(concert, 0)
        token = line_up(concert, 1, now)[0]
        with pytest.raises(QueueTokenWaiting):
            services.queue_gate_pass(key=token.key, user=token.user, concert_id=concert.id, now=now)

    def test_wrong_concert(self, concert, fan, now):
        token, _ = services.queue_token_issue(user=fan, concert_id=concert.id, now=now)
        with pytest.raises(QueueTokenWrongConcert):
            services.queue_gate_pass(
                key=token.key, user=fan, concert_id=ConcertFactory().id, now=now
            )

    def test_left_token_is_expired(self, concert, fan, now):
        token, _ = services.queue_token_issue(user=fan, concert_id=concert.id, now=now)
        services.queue_token_leave(token=token, now=now)
        with pytest.raises(QueueTokenExpired):
            services.queue_gate_pass(key=token.key, user=fan, concert_id=concert.id, now=now)

    def test_pass_records_that_the_fan_is_here(self, concert, fan, now):
        token, _ = services.queue_token_issue(user=fan, concert_id=concert.id, now=now)
        later = now + timedelta(seconds=60)
        passed = services.queue_gate_pass(key=token.key, user=fan, concert_id=concert.id, now=later)
        assert passed.pk == token.pk
        assert refreshed(token).last_seen_at == later


def test_a_hold_never_revives_a_turn_that_has_lapsed(concert, fan, now):
    """Defect (issue 9): keep-alive checked status=active but not active_until, so a
    hold placed just after the turn lapsed (before any sweep) revived it."""
    token, _ = services.queue_token_issue(user=fan, concert_id=concert.id, now=now)
    lapsed_at = token.active_until
    with pytest.raises(QueueTokenExpired):
        extend(token, fan, concert, until=lapsed_at + timedelta(minutes=5), now=lapsed_at)
    assert refreshed(token).active_until == lapsed_at
    assert services.queue_expire_stale(now=lapsed_at)["active_expired"] == 1


def test_a_hold_is_refused_for_a_turn_the_sweep_already_ended(concert, fan, now):
    token, _ = services.queue_token_issue(user=fan, concert_id=concert.id, now=now)
    services.queue_expire_stale(now=token.active_until)
    with pytest.raises(QueueTokenExpired):
        extend(token, fan, concert, until=now + timedelta(hours=1), now=now)
    assert refreshed(token).status == Status.EXPIRED
