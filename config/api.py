"""Shared API glue: the error envelope, pagination and the /api/ catch-all."""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from config.errors import DomainError

logger = logging.getLogger(__name__)

# Stable codes for DRF's own exceptions, by class.
_DRF_CODES: list[tuple[type[exceptions.APIException], str]] = [
    (exceptions.ValidationError, "validation_error"),
    (exceptions.ParseError, "parse_error"),
    (exceptions.NotAuthenticated, "not_authenticated"),
    (exceptions.AuthenticationFailed, "authentication_failed"),
    (exceptions.PermissionDenied, "permission_denied"),
    (exceptions.NotFound, "not_found"),
    (exceptions.MethodNotAllowed, "method_not_allowed"),
    (exceptions.NotAcceptable, "not_acceptable"),
    (exceptions.UnsupportedMediaType, "unsupported_media_type"),
    (exceptions.Throttled, "throttled"),
]


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def domain_error_response(exc: DomainError) -> Response:
    response = Response(error_body(exc.code, exc.message, exc.details), status=exc.http_status)
    for name, value in exc.headers.items():
        response[name] = value
    return response


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DomainError):
        return domain_error_response(exc)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()

    response = drf_exception_handler(exc, context)
    if response is None:
        logger.exception("Unhandled API error", exc_info=exc)
        return Response(
            error_body("internal_error", "An unexpected error occurred."),
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )

    code = next((c for cls, c in _DRF_CODES if isinstance(exc, cls)), "error")
    if isinstance(exc, exceptions.ValidationError):
        detail = exc.detail
        details = detail if isinstance(detail, dict) else {"non_field_errors": detail}
        message = _first_message(details) or "Invalid input."
    else:
        details = {}
        message = str(getattr(exc, "detail", exc))
        if isinstance(exc, exceptions.Throttled) and exc.wait is not None:
            details = {"retry_after_seconds": int(exc.wait + 0.999)}
    response.data = error_body(code, message, details)
    return response


def _first_message(details: Any) -> str | None:
    if isinstance(details, dict):
        for field, value in details.items():
            inner = _first_message(value)
            if inner:
                return inner if field == "non_field_errors" else f"{field}: {inner}"
    elif isinstance(details, list) and details:
        return _first_message(details[0])
    elif details:
        return str(details)
    return None


class Pagination(PageNumberPagination):
    page_size = 20
    page_size_query_param = "page_size"
    max_page_size = 100


def api_not_found(request, *args: Any, **kwargs: Any) -> JsonResponse:
    """Any unknown URL under /api/ answers in the envelope, never an HTML page."""
    return JsonResponse(error_body("not_found", f"No API endpoint at {request.path}."), status=404)


def replay_if_done(request, *, scope: str) -> Response | None:
    """The stored answer for this request's Idempotency-Key, if it already completed."""
    from django.utils import timezone

    from config.idempotency import HEADER, fingerprint, stored_answer

    answer = stored_answer(
        user_id=request.user.pk,
        scope=scope,
        key=request.headers.get(HEADER),
        print_=fingerprint(request.method, request.path, request.data),
        now=timezone.now(),
    )
    if answer is None:
        return None
    response = Response(answer[1], status=answer[0])
    response["Idempotent-Replayed"] = "true"
    return response


def run_idempotent(request, *, scope: str, execute) -> Response:
    """Run a write once per Idempotency-Key (see config.idempotency) and answer it.

    `execute()` returns (status, body); domain errors it raises are rendered in the
    envelope and stored like any answer. A replayed answer carries
    `Idempotent-Replayed: true`.
    """
    from django.utils import timezone

    from config.idempotency import HEADER, fingerprint, run_once

    status_code, body, replayed = run_once(
        user_id=request.user.pk,
        scope=scope,
        key=request.headers.get(HEADER),
        print_=fingerprint(request.method, request.path, request.data),
        now=timezone.now(),
        execute=execute,
        render_error=lambda exc: (exc.http_status, error_body(exc.code, exc.message, exc.details)),
    )
    response = Response(body, status=status_code)
    if replayed:
        response["Idempotent-Replayed"] = "true"
    return response
