"""Query budgets on the hot paths (issue 10): an N+1 or an extra round trip fails here.

The budgets are today's counts. The sale-day speed work lowers them; nothing may
raise them without saying why. Lists are also checked for N+1: their count does
not grow with the number of rows.
"""

import pytest
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from concerts import services as concert_services
from concerts.models import Reservation
from queueing import services as queue_services
from queueing.exceptions import QueueTokenInvalid
from queueing.models import QueueToken, WaitingRoom
from tests.conftest import admit, admitted_client, hold_seat, token_client
from tests.factories import ConcertFactory, UserFactory
from wallet import services as wallet_services

pytestmark = pytest.mark.django_db

BUDGETS = {
    # GET /api/v1/queue, full 200, no auth needed. The token and its position are one
    # query; the pacing estimates (total waiting, admission rate, capacity) are shared
    # through the cache for 5 s, so only the first poll after they lapse reads them.
    # One more cold since the rehearsal: whether the concert is sold out (shared the
    # same way), so fans in line are told.
    "poll_cold": 5,
    "poll_warm": 1,
    # The waiting room's htmx fragment (session, user, token, then as the poll). One
    # more since issue 12: whether the room is paused, so a fan is told.
    "room_fragment_cold": 11,  # and one more for "sold out", shared like the poll's
    "room_fragment_warm": 7,
    "seat_fragment": 5,  # the seat map's htmx fragment, every 4 s
    # POST /api/v1/reservations: 11 counted, until the fan's and the seat's locks
    # became one statement and the fan's count and the seat's holder another: 9.
    # Then 8: those checks ride in the hold's insert (INSERT … SELECT … WHERE), and
    # only a hold they refuse asks them again, to say why. Then 7: the fan's turn is
    # locked in the fan's and the seat's lock statement.
    "hold": 7,
    # POST /api/v1/payments with an Idempotency-Key, counted in a test's transaction
    # (its savepoints included). 27 after issue 12; issue 13's sale-day work brought
    # it to 16 (plain-SQL locks, the "other live holds" read folded into the lock),
    # then 14: the fan, seat and reservation locked in one statement, and the "other
    # live holds" read moved into the confirming UPDATE's statement. (One of the 14 is
    # the API token's read, when the cache does not hold it yet.) Then 12: the key's
    # claim became one statement that commits by itself (ON CONFLICT DO NOTHING), not
    # an INSERT in a savepoint (a transaction of its own outside a test's). Then 11:
    # the turn ends in the confirming UPDATE's statement. Then 9: the payment's own
    # atomic block nests in run_once's transaction without a savepoint (a refusal
    # rolls that back in full and run_once commits its aftermath). Then 7: the
    # payment's row and the wallet's debit ride in the confirming statement.
    "pay": 7,
    "list": 3,  # any paginated list: auth, count, page
    # The same, paid again with a new key: the key's claim, the one lock statement
    # (which reads the status: already paid), the answer stored (and savepoints). 10
    # until the claim became one statement; 8 until the payment's atomic block lost
    # its savepoint (the refused transaction now rolls back, and the answer's one
    # statement commits by itself).
    "pay_again": 6,
}


@pytest.fixture
def rich_fan(fan, concert, schedule):
    """A fan with several paid seats, holds and ledger entries (for N+1 checks)."""
    client = token_client(fan)  # each payment ends the turn: a fresh queue token each time
    wallet_services.wallet_charge(user_id=fan.pk, amount=900_000, now=timezone.now())
    for number in (10, 11, 12):
        reservation = hold_seat(fan, schedule, number)
        key = admit(fan, concert.id).key
        paid = client.post(
            "/api/v1/payments", {"reservation_id": reservation.id}, HTTP_X_QUEUE_TOKEN=key
        )
        assert paid.status_code == 201
    return fan


def waiting_tokens(n):
    concert = ConcertFactory()
    WaitingRoom.objects.filter(pk=concert.pk).update(max_active=0)
    now = timezone.now()
    return concert, [
        queue_services.queue_token_issue(user=UserFactory(), concert_id=concert.id, now=now)[0]
        for _ in range(n)
    ]


def test_a_full_poll(django_assert_max_num_queries):
    _, tokens = waiting_tokens(5)
    with django_assert_max_num_queries(BUDGETS["poll_cold"]):
        response = Client().get("/api/v1/queue", HTTP_X_QUEUE_TOKEN=tokens[-1].key)
    assert response.status_code == 200 and response.json()["position"] == 5
    with django_assert_max_num_queries(BUDGETS["poll_warm"]):  # another fan, a moment later
        response = Client().get("/api/v1/queue", HTTP_X_QUEUE_TOKEN=tokens[1].key)
    assert response.status_code == 200 and response.json()["position"] == 2


def test_the_waiting_room_fragment(django_assert_max_num_queries):
    concert, tokens = waiting_tokens(3)
    page = Client()
    page.force_login(tokens[-1].user)
    session = page.session
    session["queue_tokens"] = {str(concert.id): tokens[-1].key}
    session.save()
    with django_assert_max_num_queries(BUDGETS["room_fragment_cold"]):
        response = page.get(f"/concerts/{concert.id}/queue/status/", HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and "3" in response.content.decode()
    with django_assert_max_num_queries(BUDGETS["room_fragment_warm"]):
        response = page.get(f"/concerts/{concert.id}/queue/status/", HTTP_HX_REQUEST="true")
    assert response.status_code == 200


def test_the_seat_map_fragment(fan, concert, schedule, django_assert_max_num_queries):
    for number in range(1, 8):
        hold_seat(UserFactory(), schedule, number)
    page = Client()
    page.force_login(fan)
    session = page.session
    session["queue_tokens"] = {str(concert.id): admit(fan, concert.id).key}
    session.save()
    with django_assert_max_num_queries(BUDGETS["seat_fragment"]):
        response = page.get(
            f"/concerts/{concert.id}/book/{schedule.id}/seats/", HTTP_HX_REQUEST="true"
        )
    assert response.status_code == 200 and response.content.decode().count("seat held") == 7


def test_a_hold(fan, concert, schedule, django_assert_max_num_queries):
    client = admitted_client(fan, concert)
    with django_assert_max_num_queries(BUDGETS["hold"]):
        response = client.post(
            "/api/v1/reservations", {"schedule_id": schedule.id, "seat_number": 3}
        )
    assert response.status_code == 201


CHECKS = "SELECT (SELECT COUNT(*)"  # seat_hold_checks' statement


def test_a_hold_of_a_free_seat_checks_in_its_insert_and_one_of_a_lapsed_seat_asks_why(
    fan, other_fan, concert, schedule
):
    """The fan's count and the seat's holder are read in the insert's own statement;
    the control: a seat whose hold lapsed fails that insert's condition, and the
    checks run on their own to end the lapsed hold before the seat is held."""
    client = admitted_client(fan, concert)
    with CaptureQueriesContext(connection) as free:
        response = client.post(
            "/api/v1/reservations", {"schedule_id": schedule.id, "seat_number": 3}
        )
    assert response.status_code == 201
    inserts = [q["sql"] for q in free.captured_queries if q["sql"].startswith("INSERT")]
    assert len(inserts) == 1 and " WHERE (SELECT COUNT(*)" in inserts[0]
    assert not any(q["sql"].startswith(CHECKS) for q in free.captured_queries)

    lapsed = hold_seat(other_fan, schedule, 5)
    Reservation.objects.filter(pk=lapsed.pk).update(expires_at=timezone.now())
    with CaptureQueriesContext(connection) as taken_over:
        response = client.post(
            "/api/v1/reservations", {"schedule_id": schedule.id, "seat_number": 5}
        )
    assert response.status_code == 201
    assert sum(q["sql"].startswith(CHECKS) for q in taken_over.captured_queries) == 1
    lapsed.refresh_from_db()
    assert lapsed.status == Reservation.Status.EXPIRED


TURN_LOCK = "FROM queueing_queuetoken t WHERE t.key = %s FOR NO KEY UPDATE"  # _lock_turn's


def test_a_hold_locks_the_turn_with_the_fan_and_the_seat_and_one_it_misses_on_its_own(
    fan, concert, schedule
):
    """The fan's turn is locked, and read as it stands, in the statement that locks
    the fan and the seat; the control: a turn the gate passed (from the mirror) but
    whose row that statement does not find is looked for on its own, under its own
    lock, which refuses it."""
    client = admitted_client(fan, concert)
    with CaptureQueriesContext(connection) as held:
        response = client.post(
            "/api/v1/reservations", {"schedule_id": schedule.id, "seat_number": 3}
        )
    assert response.status_code == 201
    locks = [q["sql"] for q in held.captured_queries if "FOR NO KEY UPDATE" in q["sql"]]
    assert len(locks) == 1 and locks[0].endswith("FOR NO KEY UPDATE OF u, s, t"), locks
    assert "queueing_queuetoken t" in locks[0]

    # The control, in the service: a turn of a token's shape that no row has (the gate
    # passed it a moment before, from the mirror; then it was gone).
    missing = "x" * 43
    with transaction.atomic(), CaptureQueriesContext(connection) as missed:
        seat, turn = concert_services._lock_fan_and_seat(
            user_id=fan.pk,
            schedule_id=schedule.id,
            seat_number=4,
            turn=queue_services.queue_turn_lock_part(missing),
        )
        assert seat.number == 4 and turn is None
        with pytest.raises(QueueTokenInvalid):
            queue_services.queue_turn_extend(
                key=missing, user=fan, concert_id=concert.id, until=timezone.now(),
                now=timezone.now(), locked=turn,
            )  # fmt: skip
    statements = [q["sql"] for q in missed.captured_queries]
    assert "queueing_queuetoken t" in statements[0] and "queueing_queuetoken" not in statements[1]
    assert statements[1].endswith("FOR NO KEY UPDATE OF u, s")
    assert statements[2].endswith(f"t.key = '{missing}' FOR NO KEY UPDATE"), statements


def test_a_payment_ends_the_turn_in_its_confirming_statement_unless_a_seat_is_still_held(
    fan, concert, schedule
):
    """The fan's turn ends in the statement that confirms the seat and asks whether
    the fan holds another; the control: a fan paying one of two held seats keeps the
    turn, which that statement leaves alone and the payment locks on its own."""
    client = admitted_client(fan, concert)
    wallet_services.wallet_charge(user_id=fan.pk, amount=500_000, now=timezone.now())
    first, second = hold_seat(fan, schedule, 4), hold_seat(fan, schedule, 5)
    with CaptureQueriesContext(connection) as one_of_two:
        response = client.post("/api/v1/payments", {"reservation_id": first.id})
    assert response.status_code == 201
    statements = [q["sql"] for q in one_of_two.captured_queries]
    (confirming,) = [sql for sql in statements if sql.startswith("WITH paid AS")]
    assert "ended AS (UPDATE queueing_queuetoken" in confirming
    assert sum(is_turn_lock(sql) for sql in statements) == 1  # the turn kept, locked
    token = QueueToken.objects.get(user=fan, concert=concert)
    assert token.status == QueueToken.Status.ACTIVE

    with CaptureQueriesContext(connection) as last:
        response = client.post("/api/v1/payments", {"reservation_id": second.id})
    assert response.status_code == 201
    statements = [q["sql"] for q in last.captured_queries]
    assert not any("queueing_queuetoken" in sql for sql in statements if not sql.startswith("WITH"))
    token.refresh_from_db()
    assert (token.status, token.end_reason) == (QueueToken.Status.ENDED, "paid")


def is_turn_lock(sql: str) -> bool:
    """queueing's _lock_turn: the turn alone, locked by its key."""
    return "FROM queueing_queuetoken t WHERE t.key = " in sql and sql.endswith("FOR NO KEY UPDATE")


def test_a_payment(fan, concert, schedule, django_assert_max_num_queries):
    client = admitted_client(fan, concert)
    wallet_services.wallet_charge(user_id=fan.pk, amount=200_000, now=timezone.now())
    reservation = hold_seat(fan, schedule, 4)
    with django_assert_max_num_queries(BUDGETS["pay"]):
        response = client.post(
            "/api/v1/payments", {"reservation_id": reservation.id}, HTTP_IDEMPOTENCY_KEY="k-1"
        )
    assert response.status_code == 201


@pytest.mark.parametrize(
    "path",
    ["/api/v1/tickets", "/api/v1/wallet/ledger", "/api/v1/reservations", "/api/v1/payments"],
)
def test_lists_stay_in_budget_whatever_their_length(rich_fan, concert, schedule, path):
    client = token_client(rich_fan)

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            response = client.get(path)
        assert response.status_code == 200 and response.json()["count"] >= 3
        return len(captured.captured_queries)

    few = queries()
    reservation = hold_seat(rich_fan, schedule, 20)  # one more row of every kind
    key = admit(rich_fan, concert.id).key
    client.post("/api/v1/payments", {"reservation_id": reservation.id}, HTTP_X_QUEUE_TOKEN=key)
    more = queries()
    assert few == more <= BUDGETS["list"], (few, more)


def test_a_payment_retried_after_it_went_through(fan, concert, schedule):
    """A fan who pays again for a paid seat (a new Idempotency-Key: a second click, a
    retry storm) is refused after the one lock statement (fan, seat, reservation),
    which reads the reservation's status too: nothing more is locked or read."""
    client = admitted_client(fan, concert)
    wallet_services.wallet_charge(user_id=fan.pk, amount=200_000, now=timezone.now())
    reservation = hold_seat(fan, schedule, 4)
    paid = client.post(
        "/api/v1/payments", {"reservation_id": reservation.id}, HTTP_IDEMPOTENCY_KEY="k-1"
    )
    assert paid.status_code == 201
    with CaptureQueriesContext(connection) as queries:
        again = client.post(
            "/api/v1/payments", {"reservation_id": reservation.id}, HTTP_IDEMPOTENCY_KEY="k-2"
        )
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "already_paid"
    locks = [q["sql"] for q in queries if "FOR NO KEY UPDATE" in q["sql"]]
    assert len(locks) == 1 and "auth_user" in locks[0], locks
    assert len(queries) <= BUDGETS["pay_again"]
