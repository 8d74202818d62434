"""The database connection (config/postgresql and its settings): a health check with no
round trip while the server is there, a dropped connection replaced before a
request's first query, and statements prepared on the server."""

from __future__ import annotations

import select
import time

import psycopg
import pytest
from django.conf import settings
from django.db import OperationalError, connection

pytestmark = pytest.mark.django_db(transaction=True)


def _terminate_our_backend() -> None:
    """Kill this connection's server process from another connection, and wait until
    the server's goodbye has reached our socket."""
    pid = connection.connection.info.backend_pid
    params = connection.get_connection_params()
    dsn = {k: v for k, v in params.items() if k in ("dbname", "user", "host", "port", "password")}
    with psycopg.connect(**dsn, autocommit=True) as killer:
        assert killer.execute("SELECT pg_terminate_backend(%s)", [pid]).fetchone()[0]
    deadline = time.monotonic() + 10
    while not select.select([connection.connection.pgconn.socket], [], [], 0.1)[0]:
        assert time.monotonic() < deadline, "the server never closed our socket"


def _a_new_request() -> None:
    """What Django does at the start of each request with a persistent connection."""
    connection.health_check_done = False


def _sent(monkeypatch) -> list[str]:
    sent: list[str] = []
    raw = connection.connection
    real = raw.cursor

    def cursor(*args, **kwargs):
        sent.append("cursor")
        return real(*args, **kwargs)

    monkeypatch.setattr(raw, "cursor", cursor)
    return sent


def test_the_backend_is_the_one_with_the_cheap_check():
    assert settings.DATABASES["default"]["ENGINE"] == "config.postgresql"
    assert connection.health_check_enabled


def test_a_healthy_idle_connection_is_checked_without_a_round_trip(monkeypatch):
    connection.ensure_connection()
    sent = _sent(monkeypatch)
    assert connection.is_usable()
    assert sent == []  # Django's own check would have sent SELECT 1


def test_a_terminated_connection_is_replaced_before_the_first_query():
    connection.ensure_connection()
    old_pid = connection.connection.info.backend_pid
    _terminate_our_backend()
    assert not connection.is_usable()
    _a_new_request()
    with connection.cursor() as cursor:  # the request's first query succeeds
        cursor.execute("SELECT pg_backend_pid()")
        assert cursor.fetchone()[0] != old_pid


def test_control_without_the_health_check_the_first_query_fails(monkeypatch):
    connection.ensure_connection()
    _terminate_our_backend()
    monkeypatch.setattr(connection, "health_check_enabled", False)
    _a_new_request()
    with pytest.raises(OperationalError), connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    connection.close()


def test_control_a_check_of_the_local_state_alone_misses_the_drop():
    connection.ensure_connection()
    _terminate_our_backend()
    pgconn = connection.connection.pgconn
    # libpq has not read the goodbye yet: its own status still says OK and idle.
    assert pgconn.status == psycopg.pq.ConnStatus.OK
    assert pgconn.transaction_status == psycopg.pq.TransactionStatus.IDLE
    connection.close()


def test_a_statement_a_connection_runs_often_is_prepared_on_the_server():
    """DB_PREPARED_STATEMENTS (on by default): parameters bound by the server, and a
    statement run 5 times on a connection prepared there, so it is planned once."""
    options = settings.DATABASES["default"]["OPTIONS"]
    assert options["server_side_binding"] is True and options["prepare_threshold"] == 5
    statement = "SELECT count(*) FROM auth_user WHERE id > %s"
    with connection.cursor() as cursor:
        for n in range(6):
            cursor.execute(statement, [n])
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [row[0] for row in cursor.fetchall()]
    assert any("FROM auth_user WHERE id > $1" in text for text in prepared), prepared
