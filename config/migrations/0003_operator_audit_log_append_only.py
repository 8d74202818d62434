"""Make the operators' audit log append-only in the database itself (PostgreSQL): UPDATE and
DELETE on config_operatoraction raise, whatever code path tries them."""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION operator_action_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'config_operatoraction is append-only (% refused)', TG_OP
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER operator_action_append_only
    BEFORE UPDATE OR DELETE ON config_operatoraction
    FOR EACH ROW EXECUTE FUNCTION operator_action_append_only();
"""
DROP = """
DROP TRIGGER IF EXISTS operator_action_append_only ON config_operatoraction;
DROP FUNCTION IF EXISTS operator_action_append_only();
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [("config", "0002_operator_audit_log")]
    operations = [migrations.RunPython(forwards, backwards)]
