"""Django's PostgreSQL backend with a health check that costs no round trip.

With persistent connections (CONN_MAX_AGE) and CONN_HEALTH_CHECKS, Django checks a
reused connection before the first query of each request with `SELECT 1`: a whole
round trip to PostgreSQL on every request, which on the sale-day write paths (a
top-up is one statement) was as costly as the work itself.

This check looks at the connection's socket instead. An idle connection that is
healthy has nothing to read. A server that goes away (restart, crash,
`pg_terminate_backend`, an idle timeout) sends its FATAL message and closes the
socket, so the socket turns readable: only then is `SELECT 1` run, and its failure
closes the connection and Django opens a new one before the request's query. A
connection that is not idle (never the case between requests) gets `SELECT 1`.
"""

from __future__ import annotations

import select

from django.db.backends.postgresql.base import DatabaseWrapper as PostgresDatabaseWrapper
from psycopg import pq


class DatabaseWrapper(PostgresDatabaseWrapper):
    def is_usable(self) -> bool:
        if self.connection is None:
            return False
        pgconn = self.connection.pgconn
        if pgconn.status != pq.ConnStatus.OK:
            return False
        if pgconn.transaction_status == pq.TransactionStatus.IDLE:
            try:
                readable, _, _ = select.select([pgconn.socket], [], [], 0)
            except (OSError, ValueError):
                return False
            if not readable:
                return True  # nothing from the server: it is there, and idle
        return super().is_usable()  # something arrived (or mid-transaction): ask
