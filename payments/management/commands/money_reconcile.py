"""Check the money across the whole system in one snapshot. Exits 1 on a mismatch."""

import sys

from django.core.management.base import BaseCommand
from django.db import connection, transaction

from payments.selectors import money_reconcile


class Command(BaseCommand):
    help = (
        "Check charges = balances + payments - refunds, every wallet against its ledger, "
        "and every confirmed reservation against one paid payment and one ledger debit."
    )

    def handle(self, *args, **options):
        outermost = not connection.in_atomic_block
        with transaction.atomic():
            if connection.vendor == "postgresql" and outermost:
                # One consistent snapshot of every table the checks read.
                with connection.cursor() as cursor:
                    cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            report = money_reconcile()
        self.stdout.write(
            f"charges ₩{report.charges:,} | balances ₩{report.balances:,} | "
            f"payments ₩{report.payments:,} | refunds ₩{report.refunds:,}"
        )
        for problem in report.problems:
            self.stdout.write(f"MISMATCH {problem}")
        if not report.ok:
            self.stdout.write(f"{len(report.problems)} problem(s) found.")
            sys.exit(1)
        self.stdout.write("OK: the money reconciles.")
