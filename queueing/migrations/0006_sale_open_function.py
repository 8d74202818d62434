"""queueing_sale_open(concert): is the concert's line first come, first served now
(no scheduled sale, or its sale has started)? A plpgsql VOLATILE function, so each
call reads the waiting room with a snapshot of its own: the line-up statement calls
it after taking the line lock, and so sees a sale start that committed while it
waited for that lock (see queueing.services._insert_waiting). PostgreSQL only."""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION queueing_sale_open(p_concert bigint) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RETURN (SELECT sale_starts_at IS NULL OR sale_started_at IS NOT NULL
            FROM queueing_waitingroom WHERE concert_id = p_concert);
END;
$$;
"""
DROP = "DROP FUNCTION IF EXISTS queueing_sale_open(bigint);"


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [("queueing", "0005_scheduled_sale_pre_queue")]
    operations = [migrations.RunPython(forwards, backwards)]
