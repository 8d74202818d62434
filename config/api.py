"""Shared API glue: the error envelope, pagination and the /api/ catch-all."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpResponse, JsonResponse
from django.views.csrf import csrf_failure as django_csrf_failure
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework import exceptions, serializers, status
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from config.errors import DomainError, error_body
from config.idempotency import HEADER as IDEMPOTENCY_HEADER
from config.idempotency import Answer

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


def domain_error_response(exc: DomainError) -> Response:
    response = Response(exc.body(), status=exc.http_status)
    for name, value in exc.headers.items():
        response[name] = value
    return response


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DomainError):
        return domain_error_response(exc)
    if isinstance(exc, RequestDataTooBig):
        return Response(
            error_body(
                "payload_too_large",
                f"The request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE:,} bytes.",
            ),
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
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


def paginated(request, view, queryset, serializer_class, *, context=None) -> Response:
    """One page of `queryset`, serialized, with count and next/previous links."""
    paginator = Pagination()
    page = paginator.paginate_queryset(queryset, request, view=view)
    return paginator.get_paginated_response(
        serializer_class(page, many=True, context=context or {}).data
    )


@csrf_exempt  # it changes nothing; a POST here is a wrong path, not a forged form
def api_not_found(request, *args: Any, **kwargs: Any) -> JsonResponse:
    """Any unknown URL under /api/ answers in the envelope, never an HTML page."""
    return JsonResponse(error_body("not_found", f"No API endpoint at {request.path}."), status=404)


def csrf_failure(request, reason: str = "") -> HttpResponse:
    """CSRF_FAILURE_VIEW: under /api/ a refused CSRF check answers in the envelope."""
    if request.path.startswith("/api/"):
        return JsonResponse(
            error_body("permission_denied", f"CSRF check failed: {reason}"), status=403
        )
    return django_csrf_failure(request, reason=reason)


# --- strict JSON input: a number where a number is meant, text where text is --

MAX_ID = 2**63 - 1  # PostgreSQL bigint


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer: not a numeric string, a float or a boolean."""

    default_error_messages = {
        "strict": "Must be a JSON integer (not text, a decimal or true/false)."
    }

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("strict")
        return super().to_internal_value(data)


def id_field(**kwargs) -> StrictIntegerField:
    """A row id in a request body: a positive JSON integer a bigint can hold."""
    return StrictIntegerField(min_value=1, max_value=MAX_ID, **kwargs)


class StrictTextMixin:
    """Text must arrive as a JSON string, not a number or a boolean turned into one."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictCharField(StrictTextMixin, serializers.CharField):
    pass


class StrictRegexField(StrictTextMixin, serializers.RegexField):
    pass


# --- shared API pieces: the headers every app's views document and read ------

QUEUE_TOKEN_HEADER = "X-Queue-Token"

QUEUE_TOKEN_PARAMETER = OpenApiParameter(
    QUEUE_TOKEN_HEADER,
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    required=True,
    description="The secret token from POST /concerts/{id}/queue.",
)
IDEMPOTENCY_KEY_PARAMETER = OpenApiParameter(
    IDEMPOTENCY_HEADER,
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    required=False,
    description="Retry safely: the same key and body replay the first answer for 24 h.",
)


def request_header(request, name: str) -> str | None:
    """One request header, read from META: `request.headers` parses every header of
    the request the first time it is read, and the hot reads need one or two."""
    return request.META.get("HTTP_" + name.upper().replace("-", "_"))


def idempotency_key(request) -> str | None:
    return request_header(request, IDEMPOTENCY_HEADER)


def answer_response(answer: Answer, *, location: str | None = None) -> Response:
    """Render a retry-safe write's answer (see answer_headers)."""
    return Response(answer.body, status=answer.status, headers=answer_headers(answer, location))


def answer_headers(answer: Answer, location: str | None = None) -> dict[str, str]:
    """A retry-safe write's headers: a replayed answer says so, and a 201 names what
    it created in Location, a template filled from the body."""
    headers = {}
    if answer.replayed:
        headers["Idempotent-Replayed"] = "true"
    if location and answer.status == 201:
        headers["Location"] = location.format(**answer.body)
    return headers
