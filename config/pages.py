"""Shared glue for the fans' pages: how a domain error reads on a page.

The API renders a DomainError as its envelope (config.api); a page shows the
same error's message, so fans and API clients read the same words.
"""

from __future__ import annotations

import re
import uuid

from django.contrib import messages
from django.http import HttpRequest

from config.errors import DomainError

FORM_KEY = re.compile(r"[0-9a-f]{32}")


def new_form_key() -> str:
    """The Idempotency-Key a page's form carries, so a double submit acts once."""
    return uuid.uuid4().hex


def is_form_key(value: object) -> bool:
    """Is this a key a page of ours made? Anything else is a tampered form."""
    return isinstance(value, str) and bool(FORM_KEY.fullmatch(value))


def show_error(request: HttpRequest, exc: DomainError) -> None:
    messages.error(request, exc.page_message or exc.message)


def won(amount: int | None) -> str:
    """Money as operators and fans read it: ₩154,000."""
    return "—" if amount is None else f"₩{amount:,}"
