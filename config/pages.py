"""Shared glue for the fans' pages: how a domain error reads on a page.

The API renders a DomainError as its envelope (config.api); a page shows the
same error's message, so fans and API clients read the same words.
"""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest

from config.errors import DomainError


def show_error(request: HttpRequest, exc: DomainError) -> None:
    messages.error(request, exc.message)
