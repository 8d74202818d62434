"""Model instances from one plain SQL statement, for the sale-day hot paths.

Building a query through the ORM (filters, joins, select_related, FOR UPDATE) cost
more Python time than PostgreSQL took to run it: a payment compiled about a dozen
such queries. The hot paths write their SQL once and turn each row back into model
instances here, exactly as the ORM would (`Model.from_db`), joined ones included.

    sql = f"SELECT {select(Reservation, 'r')}, {select(Seat, 's')} FROM ..."
    reservation, seat = instances(row, Reservation, Seat)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import cache
from typing import NamedTuple

from django.db import connections, models
from django.db.models.base import ModelState
from django.db.models.fields.related_descriptors import ForeignKeyDeferredAttribute
from django.db.models.query_utils import DeferredAttribute
from django.db.models.signals import post_init, post_save, pre_init, pre_save


class Part(NamedTuple):
    """Data-modifying steps of one app that ride in another app's statement, so a
    write takes one round trip where it took several: `ctes` (`name AS (...)`, one
    or more, comma-separated) joins the statement's WITH list, `params` are theirs,
    and `answer` (SQL with no parameters) is the value the statement answers with
    for them. The statement's owner documents what its own steps return for a part
    to read. A statement that cannot carry a part (make run's SQLite) answers None
    for it, and the part's owner then does the same work in its own statements."""

    ctes: str
    params: list
    answer: str


class _Kept:
    """The cursor `cursor()` keeps on a connection, and what it was made for."""

    __slots__ = ("raw", "logged", "wrapper", "busy")

    def __init__(self, raw, logged: bool, wrapper) -> None:
        self.raw, self.logged, self.wrapper, self.busy = raw, logged, wrapper, False


@contextmanager
def cursor(db: str = "default") -> Iterator:
    """A cursor for the hot paths' plain SQL: the connection's own, kept from one
    statement to the next, where Django makes a new one each time. psycopg keeps,
    per cursor, the loaders and dumpers it looked up for each column and parameter
    type; a new cursor per statement looks them all up again, which cost more Python
    than making the cursor (in process, a one-column SELECT on a kept cursor took
    about a third less CPU; a payment 5 % fewer instructions). Use it as
    `with rawsql.cursor() as c:`, and read what the
    statement returns inside the block.

    A block opened inside another gets a new cursor of its own, so the outer
    statement's rows stay where they are. A new connection (a reconnect) gets a new
    cursor, and so does a change of query logging (tests' CaptureQueriesContext
    sees every statement). The connection's health check runs as for Django's own.
    On make run's embedded SQLite, every block gets a new cursor, as before."""
    connection = connections[db]
    kept: _Kept | None = connection.__dict__.get("_rawsql_cursor")
    if (kept is not None and kept.busy) or connection.vendor != "postgresql":
        with connection.cursor() as fresh:
            yield fresh
        return
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    if (
        kept is None
        or kept.raw is not connection.connection
        or kept.logged != connection.queries_logged
        or kept.wrapper.cursor.closed
    ):
        kept = _Kept(connection.connection, connection.queries_logged, connection.cursor())
        connection.__dict__["_rawsql_cursor"] = kept
    kept.busy = True
    try:
        yield kept.wrapper
    finally:
        kept.busy = False


@cache
def _fields(model: type[models.Model], db: str = "default") -> tuple[list[str], list[str], list]:
    """Columns, attribute names, and per field the converters the ORM would apply to
    its value (the backend's, then the field's: none for these types on PostgreSQL;
    SQLite's text dates, say, on make run's embedded database)."""
    connection = connections[db]
    fields = model._meta.concrete_fields
    convert = []
    for i, field in enumerate(fields):
        col = field.get_col(model._meta.db_table)
        funcs = connection.ops.get_db_converters(col) + col.get_db_converters(connection)
        if funcs:
            convert.append((i, col, funcs))
    return [f.column for f in fields], [f.attname for f in fields], convert


def select(model: type[models.Model], alias: str) -> str:
    """The model's columns, in field order, qualified by the table alias."""
    return ", ".join(f'{alias}."{column}"' for column in _fields(model)[0])


def width(model: type[models.Model]) -> int:
    return len(_fields(model)[0])


def params(values: list, db: str = "default") -> list:
    """Statement parameters with datetimes adapted as the ORM adapts them (unchanged
    on PostgreSQL; naive UTC text on SQLite, so they compare with stored values)."""
    adapt = connections[db].ops.adapt_datetimefield_value
    return [adapt(v) if isinstance(v, datetime) else v for v in values]


def instances(row: tuple, *models_: type[models.Model], db: str = "default") -> list:
    """One instance per model from consecutive slices of `row` (as `select` laid them
    out), loaded as the ORM loads a row: no field deferred, and a field's
    from_db_value (JSON, say) applied as the ORM applies it."""
    out, at = [], 0
    for model in models_:
        _, names, convert = _fields(model, db)
        values = row[at : at + len(names)]
        if convert:
            values = list(values)
            for i, col, funcs in convert:
                for func in funcs:
                    values[i] = func(values[i], col, connections[db])
        out.append(_loaded(model, db, names, values))
        at += len(names)
    return out


def loaded(model: type[models.Model], values: dict, db: str = "default") -> models.Model:
    """An instance as if loaded from the database, from every field's value by attname
    (a row the caller already holds, from a RETURNING clause or the queue's mirror):
    the same instance `instances` makes of that row, without Model.__init__ where
    that is safe."""
    names = _fields(model, db)[1]
    return _loaded(model, db, names, [values[name] for name in names])


def _loaded(model: type[models.Model], db: str, names: list[str], values) -> models.Model:
    """`model.from_db(db, names, values)` for a row with every field: the same
    instance, built without Model.__init__ where __init__ would only store each value
    in the instance's __dict__ and send two signals nobody listens to (a payment loads
    seven instances: 3 % of its instructions, docs/performance.md round ten). Any model
    with a listener, its own __init__ or from_db, or a field whose attribute does
    more than store its value, goes the ORM's way."""
    if not _plain(model) or pre_init.has_listeners(model) or post_init.has_listeners(model):
        return model.from_db(db, names, values)
    instance = model.__new__(model)
    state = ModelState()
    state.adding, state.db = False, db
    instance.__dict__["_state"] = state
    instance.__dict__.update(zip(names, values, strict=True))
    return instance


@cache
def _plain(model: type[models.Model]) -> bool:
    """Whether loading a full row into `model` is storing each value under its
    attname: Django's own __init__ and from_db, and each field's class attribute a
    DeferredAttribute (a foreign key's id too: its __set__ only clears a related
    object that a new instance has not cached)."""
    if model.__init__ is not models.Model.__init__:
        return False
    if model.from_db.__func__ is not models.Model.from_db.__func__:
        return False
    for field in model._meta.concrete_fields:
        attribute = model.__dict__.get(field.attname)
        if type(attribute) not in (DeferredAttribute, ForeignKeyDeferredAttribute):
            return False
    return True


def for_no_key_update(of: str = "") -> str:
    """The row-lock clause, or nothing on make run's embedded SQLite (which locks the
    whole database for a write transaction, and has no row locks to take)."""
    if connections["default"].vendor != "postgresql":
        return ""
    return f" FOR NO KEY UPDATE OF {of}" if of else " FOR NO KEY UPDATE"


def insert(
    instance: models.Model,
    db: str = "default",
    *,
    unless_taken: bool = False,
    where: tuple[str, list] | None = None,
) -> models.Model | None:
    """INSERT a new instance in one statement (`RETURNING id`) and mark it saved, as
    `save()` would, without compiling the ORM's insert. No signal is sent, so a model
    with save receivers is refused.

    `unless_taken`: if a unique constraint finds the row taken (by a row that stands,
    or that commits meanwhile), nothing is written and None is returned (`ON CONFLICT
    DO NOTHING`): no error, so no savepoint is needed inside a transaction, and
    outside one the statement commits by itself. The constraint beneath decides: the
    statement names none.

    `where`: (SQL condition, its parameters): the row is written only if the
    condition holds, read in the statement's own snapshot (`INSERT … SELECT … WHERE`);
    else nothing is written and None is returned. A check and its write in one
    round trip, where the caller's locks keep what the condition reads still."""
    connection = connections[db]
    model = type(instance)
    if pre_save.has_listeners(model) or post_save.has_listeners(model):
        raise TypeError(f"{model.__name__} has save receivers: save() it instead")
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    values = [f.get_db_prep_save(getattr(instance, f.attname), connection) for f in fields]
    conflict = " ON CONFLICT DO NOTHING" if unless_taken else ""
    placeholders = ", ".join(["%s"] * len(fields))
    row_source = f"VALUES ({placeholders})"
    if where is not None:
        condition, condition_params = where
        row_source = f"SELECT {placeholders} WHERE {condition}"
        values = [*values, *condition_params]
    with cursor(db) as cur:
        cur.execute(
            f"INSERT INTO {model._meta.db_table} ({', '.join(f.column for f in fields)})"
            f" {row_source}{conflict} RETURNING {model._meta.pk.column}",
            params(values, db),
        )
        row = cur.fetchone()
    return None if row is None else saved(instance, row[0], db)


def saved(instance: models.Model, pk: int, db: str = "default") -> models.Model:
    """The new instance, marked as written under `pk` (as `save()` leaves it): for a
    row an INSERT wrote in plain SQL, here or as part of another statement."""
    instance.pk = pk
    instance._state.adding, instance._state.db = False, db
    return instance
