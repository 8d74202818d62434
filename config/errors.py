"""The one error vocabulary shared by every app, and its registry.

Services raise a subclass of DomainError. Each subclass names a stable `code`, an
HTTP status and a default message, and registers itself here when it is defined,
so `REGISTRY` holds every code the service can answer with. A code means one thing:
defining it twice with another status is an error at import time.

The API renders an error as {"error": {"code", "message", "details"}} with its HTTP
status (`error_body`); pages show its message (`config.pages.show_error`). The
error table in docs/errors.md is generated from REGISTRY (`manage.py error_codes`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True)
class ErrorCode:
    code: str
    http_status: int
    message: str
    source: str  # where it is defined, for the docs table


REGISTRY: dict[str, ErrorCode] = {}


def register_code(code: str, http_status: int, message: str, *, source: str) -> None:
    """Add a code to the registry; the same code must always carry the same status."""
    known = REGISTRY.get(code)
    if known is not None and known.http_status != http_status:
        raise RuntimeError(
            f"error code {code!r} is registered with HTTP {known.http_status} "
            f"({known.source}) and again with {http_status} ({source})"
        )
    if known is None:
        REGISTRY[code] = ErrorCode(code, http_status, message, source)


def registry() -> dict[str, ErrorCode]:
    """Every code the service can answer with, once each app's errors are imported
    (each installed app's `exceptions` module, and config's own)."""
    from importlib import import_module
    from importlib.util import find_spec

    from django.apps import apps

    for app in apps.get_app_configs():
        name = f"{app.name}.exceptions"
        if find_spec(name) is not None:
            import_module(name)
    for name in ("config.idempotency", "config.accounts"):  # config's own errors
        import_module(name)
    return dict(sorted(REGISTRY.items()))


def registry_markdown() -> str:
    """The error table for docs/errors.md (`manage.py error_codes --write`)."""
    lines = [
        "# Error codes",
        "",
        "Generated from `config.errors.REGISTRY` by `python manage.py error_codes --write`;",
        "a test fails when this file is stale. Every error answers with this envelope:",
        "",
        "```json",
        '{"error": {"code": "seat_unavailable", "message": "...", "details": {}}}',
        "```",
        "",
        "Pages show the same `message`. A code always carries the same HTTP status.",
        "",
        registry_table(),
    ]
    return "\n".join(lines)


def registry_table() -> str:
    """The code | HTTP | meaning | defined in table, one row per registered code."""
    lines = ["| code | HTTP | meaning | defined in |", "|---|---|---|---|"]
    for entry in registry().values():
        lines.append(
            f"| `{entry.code}` | {entry.http_status} | {entry.message} | `{entry.source}` |"
        )
    return "\n".join(lines) + "\n"


def api_doc_with_table(text: str) -> str:
    """docs/api.md with its generated error table between the markers refreshed."""
    start, end = "<!-- error-table:start -->\n", "<!-- error-table:end -->"
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return head + start + registry_table() + end + tail


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """The API's error envelope."""
    return {"error": {"code": code, "message": message, "details": details or {}}}


class DomainError(Exception):
    code: ClassVar[str] = "domain_error"
    http_status: ClassVar[int] = 400
    message: str = "The request could not be completed."
    # The same refusal in a fan's words, where the API's message names API details.
    page_message: ClassVar[str | None] = None
    # An answer worth replaying for the same Idempotency-Key. Refusals that say
    # "not now" (the gate, a busy lock) are not stored, so a retry can succeed.
    replayable: ClassVar[bool] = True
    # What a refusal keeps although the refused write rolled back (a seat given back,
    # a failed attempt on record): writes that config.idempotency.run_once commits
    # after that rollback, in one transaction with the answer it stores.
    aftermath: Callable[[], None] | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "code" in cls.__dict__:
            register_code(
                cls.code, cls.http_status, cls.message, source=f"{cls.__module__}.{cls.__name__}"
            )

    def __init__(
        self,
        message: str | None = None,
        *,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message or self.message
        self.details = details or {}
        self.headers = headers or {}
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message

    def body(self) -> dict[str, Any]:
        return error_body(self.code, self.message, self.details)


class NotFound(DomainError):
    code = "not_found"
    http_status = 404
    message = "Not found."


# Codes the framework answers with (DRF's own exceptions, the /api/ catch-all, a crash).
for _code, _status, _message in (
    ("validation_error", 400, "The request's input is invalid; details name each field."),
    ("parse_error", 400, "The request body is not valid JSON."),
    ("not_authenticated", 401, "Authentication credentials were not provided."),
    ("authentication_failed", 401, "The credentials are invalid."),
    ("permission_denied", 403, "You may not do this."),
    ("method_not_allowed", 405, "That HTTP method is not allowed here."),
    ("payload_too_large", 413, "The request body is too large."),
    ("not_acceptable", 406, "The requested response format is not available."),
    ("unsupported_media_type", 415, "The request's content type is not supported."),
    ("throttled", 429, "Too many requests; wait for Retry-After seconds."),
    ("internal_error", 500, "An unexpected error occurred."),
):
    register_code(_code, _status, _message, source="config.api (framework)")
