"""Repair the waiting room's bucket counts from the tokens (beat runs this every 5 minutes)."""

from django.core.management.base import BaseCommand

from queueing import services


class Command(BaseCommand):
    help = "Recompute the queue's bucket counts from the waiting tokens and fix any drift."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--concert", type=int, default=None, help="Only this concert id.")

    def handle(self, *args, concert: int | None = None, **options) -> None:
        fixed = services.queue_buckets_rebuild(concert_id=concert)
        self.stdout.write(f"Repaired {fixed} bucket row(s).")
