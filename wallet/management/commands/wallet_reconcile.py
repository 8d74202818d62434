"""Check that every wallet's balance equals the sum of its ledger. Exits 1 on a mismatch."""

import sys

from django.core.management.base import BaseCommand

from wallet.models import Wallet
from wallet.selectors import wallet_mismatches


class Command(BaseCommand):
    help = "Check every wallet's balance against its ledger; exit 1 and name them on mismatch."

    def handle(self, *args, **options):
        mismatches = wallet_mismatches()
        for m in mismatches:
            self.stdout.write(
                f"MISMATCH wallet of {m.username} (user {m.user_id}): "
                f"balance ₩{m.balance:,} but ledger sums to ₩{m.ledger_sum:,}"
            )
        checked = Wallet.objects.count()
        if mismatches:
            self.stdout.write(f"{len(mismatches)} of {checked} wallet(s) do not reconcile.")
            sys.exit(1)
        self.stdout.write(f"OK: all {checked} wallet(s) reconcile with their ledgers.")
