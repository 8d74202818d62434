"""Baseline endpoints the benchmarks compare against, mounted only with BENCH_ENDPOINTS=1.

They run in the same app, on the same server config, as the endpoints measured:
- /bench/bare: a DRF view with no database and no authentication;
- /bench/select/<pk>: one indexed primary-key SELECT;
- /bench/contended: UPDATE ... SET n = n + 1 under select_for_update on one of 50 rows.

And two floors, which say what a goal asks of the code around its statements:
- /bench/line-up-floor/<concert>: a line-up's one statement (queueing's own
  function), for the fan whose API token is in Authorization, and nothing else;
- /bench/payment-floor: a payment's statements, as PostgreSQL runs them for one
  seat (the locks; then one statement: the confirmation, the turn's end, the
  payment, and the debit with its ledger entry) in one transaction, for X-Fan,
  X-Reservation and X-Queue-Token, in plain SQL with nothing around them.
A floor runs the endpoint's database work with the least Python a request can
have (no authentication, no gate, no idempotency, no mirror, no after-commit
work): an endpoint cannot be cheaper than its floor while it runs those statements.
tests/bench/test_floors.py holds each floor to the rows its endpoint writes.
"""

import random

from django.db import connection, transaction
from django.urls import path
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

COUNTER_TABLE = "bench_counter"


def ensure_counter_table() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE IF NOT EXISTS {COUNTER_TABLE} (id int PRIMARY KEY, n bigint NOT NULL)"
        )
        cursor.execute(
            f"INSERT INTO {COUNTER_TABLE} SELECT g, 0 FROM generate_series(1, 50) g "
            "ON CONFLICT DO NOTHING"
        )


class BareApi(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]

    def get(self, request):
        return Response({"ok": True})


class SelectApi(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]

    def get(self, request, pk: int):
        with connection.cursor() as cursor:
            cursor.execute("SELECT id, number, price FROM concerts_seat WHERE id = %s", [pk])
            row = cursor.fetchone()
        return Response({"id": row[0], "number": row[1], "price": row[2]} if row else {})


class ContendedApi(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]

    def post(self, request):
        row = random.randint(1, 50)
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"SELECT n FROM {COUNTER_TABLE} WHERE id = %s FOR UPDATE", [row])
            cursor.execute(f"UPDATE {COUNTER_TABLE} SET n = n + 1 WHERE id = %s", [row])
        return Response({"row": row})


class LineUpFloorApi(APIView):
    """A line-up's own statement (queueing.services._insert_waiting: the fan's API token
    authenticated, the token, its place and its bucket count, one round trip) for the
    fan whose API token is in Authorization, and nothing else."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    def post(self, request, concert_id: int):
        from django.utils import timezone

        from queueing.services import _insert_waiting

        made = _insert_waiting(
            api_key=request.headers["Authorization"][len("Token ") :], concert_id=concert_id,
            now=timezone.now(), count_active=False,
        )  # fmt: skip
        return Response({"id": made.token.pk}, status=201)


class PaymentFloorApi(APIView):
    """A payment's statements for one held seat, in one transaction, in plain SQL:
    the same rows locked, written and read as by payments.services._pay (see the
    module docstring). 409 if the hold, the turn or the money is not there."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    def post(self, request):
        from django.utils import timezone

        fan, reservation = int(request.headers["X-Fan"]), int(request.headers["X-Reservation"])
        key, now = request.headers["X-Queue-Token"], timezone.now()
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(
                    "SELECT r.price, d.concert_id FROM auth_user u"
                    " JOIN concerts_reservation r ON r.user_id = u.id"
                    " JOIN concerts_seat s ON s.id = r.seat_id"
                    " JOIN concerts_schedule d ON d.id = r.schedule_id"
                    " WHERE u.id = %s AND r.id IN (%s)"
                    " ORDER BY r.id FOR NO KEY UPDATE OF u, s, r",
                    [fan, reservation],
                )
                price, concert = _one(cursor)
                cursor.execute(  # the confirmation, the turn's end if no seat is left,
                    # the payment, and the debit with its ledger entry: one statement
                    "WITH paid AS (UPDATE concerts_reservation SET status = 'confirmed',"
                    " confirmed_at = %s, expires_at = NULL WHERE id IN (%s)"
                    " AND status = 'held' AND expires_at > %s RETURNING id, user_id, price),"
                    " others AS (SELECT EXISTS (SELECT 1"
                    " FROM concerts_reservation o JOIN concerts_schedule od"
                    " ON od.id = o.schedule_id WHERE o.user_id = %s AND od.concert_id = %s"
                    " AND o.status = 'held' AND o.expires_at > %s AND o.id NOT IN (%s)) AS held),"
                    " ended AS (UPDATE queueing_queuetoken SET status = 'ended', ended_at = %s,"
                    " end_reason = 'paid' WHERE key = %s AND user_id = %s AND concert_id = %s"
                    " AND status = 'active' AND active_until > %s"
                    " AND NOT (SELECT held FROM others) RETURNING id),"
                    " paying AS (INSERT INTO payments_payment (user_id, reservation_id, amount,"
                    " status, failure_reason, created_at, paid_at) SELECT user_id, id, price,"
                    " 'paid', '', %s, %s FROM paid RETURNING id, reservation_id, amount),"
                    " debit AS (UPDATE wallet_wallet SET balance = balance - %s, updated_at = %s"
                    " WHERE user_id = %s AND balance >= %s RETURNING user_id, balance),"
                    " debited AS (INSERT INTO wallet_ledgerentry (wallet_id, kind, amount,"
                    " balance_after, created_at, payment_id, reservation_id)"
                    " SELECT user_id, 'payment', %s, balance, %s, (SELECT id FROM paying),"
                    " %s FROM debit RETURNING id)"
                    " SELECT (SELECT count(*) FROM paid), (SELECT count(*) FROM ended),"
                    " (SELECT id FROM paying), (SELECT count(*) FROM debited)",
                    [now, reservation, now, fan, concert, now, reservation,
                     now, key, fan, concert, now, now, now,
                     price, now, fan, price, price, now, reservation],
                )  # fmt: skip
                confirmed, ended, payment, debited = _one(cursor)
                if (confirmed, ended, debited) != (1, 1, 1):
                    raise _Refused()
        except _Refused:
            return Response({"paid": False}, status=409)
        return Response({"payment_id": payment}, status=201)


class _Refused(Exception):
    pass


def _one(cursor) -> tuple:
    row = cursor.fetchone()
    if row is None:
        raise _Refused()
    return row


urlpatterns = [
    path("bench/bare", BareApi.as_view()),
    path("bench/select/<int:pk>", SelectApi.as_view()),
    path("bench/contended", ContendedApi.as_view()),
    path("bench/line-up-floor/<int:concert_id>", LineUpFloorApi.as_view()),
    path("bench/payment-floor", PaymentFloorApi.as_view()),
]
