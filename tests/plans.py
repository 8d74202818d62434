"""What PostgreSQL plans for a statement the code sends: for one call's parameters,
and the plan it caches for a prepared statement after five calls (its generic plan),
which is what a busy connection runs."""

from django.db import connection
from psycopg.sql import Literal


def plan(sql: str, params) -> str:
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + sql, params)
        return "\n".join(row[0] for row in cursor.fetchall())


def statement_of(call, needle: str) -> tuple[str, list]:
    """The SQL (with %s) and parameters of the statement `call` sends containing `needle`."""
    sent = []

    def wrapper(execute, sql, params, many, context):
        if needle in sql:
            sent.append((sql, list(params)))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(wrapper):
        call()
    assert sent, needle
    return sent[0]


def generic_plan(sql: str, params) -> str:
    """The plan PostgreSQL caches for the statement once it stops planning it for each
    call's parameters (a prepared statement's generic plan)."""
    parts = sql.split("%s")
    text = "".join(f"{part}${n}" for n, part in enumerate(parts[:-1], 1)) + parts[-1]
    values = ", ".join(Literal(p).as_string(connection.connection) for p in params)
    with connection.cursor() as cursor:
        cursor.execute("PREPARE generic_probe AS " + text)
        try:
            cursor.execute("SET LOCAL plan_cache_mode = force_generic_plan")
            cursor.execute(f"EXPLAIN EXECUTE generic_probe({values})")
            return "\n".join(row[0] for row in cursor.fetchall())
        finally:
            cursor.execute("DEALLOCATE generic_probe")
