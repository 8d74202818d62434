"""The one error vocabulary shared by every app.

Services raise a subclass of DomainError. The DRF exception handler renders it
as {"error": {"code", "message", "details"}} with its HTTP status; pages show
its message. Subclasses set `code` and `http_status`; instances may carry
details and extra response headers (for example Retry-After).
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    code: str = "domain_error"
    http_status: int = 400
    message: str = "The request could not be completed."

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


class NotFound(DomainError):
    code = "not_found"
    http_status = 404
    message = "Not found."


class Conflict(DomainError):
    code = "conflict"
    http_status = 409
    message = "The request conflicts with the current state."


class ServiceBusy(DomainError):
    """A lock could not be taken quickly; the client should retry shortly."""

    code = "busy"
    http_status = 409
    message = "The resource is busy; please retry in a moment."

    def __init__(self, message: str | None = None, *, retry_after: int = 1, **kwargs: Any):
        super().__init__(message, headers={"Retry-After": str(retry_after)}, **kwargs)
