"""Print, or write to docs/errors.md, the table of every error code."""

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

from config.errors import api_doc_with_table, registry_markdown

DOC = Path(settings.BASE_DIR) / "docs" / "errors.md"
API_DOC = Path(settings.BASE_DIR) / "docs" / "api.md"


class Command(BaseCommand):
    help = (
        "The error-code table generated from config.errors.REGISTRY (docs/errors.md, docs/api.md)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--write", action="store_true", help=f"Write it to {DOC}.")

    def handle(self, *args, write: bool = False, **options) -> None:
        table = registry_markdown()
        if write:
            DOC.write_text(table)
            API_DOC.write_text(api_doc_with_table(API_DOC.read_text()))
            self.stdout.write(f"Wrote {DOC} and the error table in {API_DOC}")
        else:
            self.stdout.write(table, ending="")
