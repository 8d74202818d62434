"""Model instances from one plain SQL statement, for the sale-day hot paths.

Building a query through the ORM (filters, joins, select_related, FOR UPDATE) cost
more Python time than PostgreSQL took to run it: a payment compiled about a dozen
such queries. The hot paths write their SQL once and turn each row back into model
instances here, exactly as the ORM would (`Model.from_db`), joined ones included.

    sql = f"SELECT {select(Reservation, 'r')}, {select(Seat, 's')} FROM ..."
    reservation, seat = instances(row, Reservation, Seat)
"""

from __future__ import annotations

from datetime import datetime
from functools import cache

from django.db import connections, models
from django.db.models.signals import post_save, pre_save


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
        out.append(model.from_db(db, names, values))
        at += len(names)
    return out


def for_no_key_update(of: str = "") -> str:
    """The row-lock clause, or nothing on make run's embedded SQLite (which locks the
    whole database for a write transaction, and has no row locks to take)."""
    if connections["default"].vendor != "postgresql":
        return ""
    return f" FOR NO KEY UPDATE OF {of}" if of else " FOR NO KEY UPDATE"


def insert(instance: models.Model, db: str = "default") -> models.Model:
    """INSERT a new instance in one statement (`RETURNING id`) and mark it saved, as
    `save()` would, without compiling the ORM's insert. No signal is sent, so a model
    with save receivers is refused."""
    connection = connections[db]
    model = type(instance)
    if pre_save.has_listeners(model) or post_save.has_listeners(model):
        raise TypeError(f"{model.__name__} has save receivers: save() it instead")
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    values = [f.get_db_prep_save(getattr(instance, f.attname), connection) for f in fields]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {model._meta.db_table} ({', '.join(f.column for f in fields)})"
            f" VALUES ({', '.join(['%s'] * len(fields))}) RETURNING {model._meta.pk.column}",
            params(values, db),
        )
        instance.pk = cursor.fetchone()[0]
    instance._state.adding, instance._state.db = False, db
    return instance
