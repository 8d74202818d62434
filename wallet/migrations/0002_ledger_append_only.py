"""Make the ledger append-only in the database itself (PostgreSQL): UPDATE and
DELETE on wallet_ledgerentry raise, whatever code path tries them."""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION wallet_ledger_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'wallet_ledgerentry is append-only (% refused)', TG_OP
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER wallet_ledger_append_only
    BEFORE UPDATE OR DELETE ON wallet_ledgerentry
    FOR EACH ROW EXECUTE FUNCTION wallet_ledger_append_only();
"""
DROP = """
DROP TRIGGER IF EXISTS wallet_ledger_append_only ON wallet_ledgerentry;
DROP FUNCTION IF EXISTS wallet_ledger_append_only();
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [("wallet", "0001_wallet_and_ledger")]
    operations = [migrations.RunPython(forwards, backwards)]
