"""The OpenAPI schema tells the truth about errors and headers.

Every operation documents each error status it can answer with, the error envelope
as its body, and the codes that status carries (from config.errors.REGISTRY). The
codes come from two places:
- the framework's, inferred from the view: 401 where authentication is needed,
  400/413/415 where a body is read, 404 on a path with an id or a paginated list,
  406 everywhere (content negotiation), 429 where a throttle applies;
- the domain's, declared on the view: `error_codes = {"post": ["seat_unavailable", ...]}`.
Responses also document their headers: Location on 201, Retry-After on 429 and on
answers that pace the client, Idempotent-Replayed on retry-safe writes.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from drf_spectacular.openapi import AutoSchema
from rest_framework import serializers
from rest_framework.permissions import AllowAny

from config.errors import registry


class ErrorDetailOutput(serializers.Serializer):
    code = serializers.CharField(help_text="Stable; see docs/errors.md.")
    message = serializers.CharField(help_text="For people; may change.")
    details = serializers.DictField(help_text="Structured data, such as invalid fields.")


class ErrorEnvelope(serializers.Serializer):
    error = ErrorDetailOutput()


def paginated_list(serializer_class: type[serializers.Serializer]) -> serializers.Serializer:
    """The schema of a paginated list of `serializer_class` (count, next, previous, results)."""
    from drf_spectacular.utils import inline_serializer

    name = serializer_class.__name__.removesuffix("Output")
    return inline_serializer(
        name=f"Paginated{name}List",
        fields={
            "count": serializers.IntegerField(),
            "next": serializers.URLField(allow_null=True),
            "previous": serializers.URLField(allow_null=True),
            "results": serializer_class(many=True),
        },
    )


HEADER_DOCS = {
    "Location": "The URL of what was created.",
    "Retry-After": "Seconds to wait before the next request.",
    "Idempotent-Replayed": "`true` when this is the stored answer to an earlier request "
    "with the same Idempotency-Key.",
}


def _header(name: str) -> dict[str, Any]:
    kind = "integer" if name == "Retry-After" else "string"
    return {"schema": {"type": kind}, "description": HEADER_DOCS[name]}


class EnvelopeAutoSchema(AutoSchema):
    def _error_codes(self) -> list[str]:
        view, method = self.view, self.method.lower()
        codes = list(getattr(view, "error_codes", {}).get(method, []))
        codes.append("not_acceptable")
        needs_auth = not any(isinstance(p, AllowAny) for p in view.get_permissions()) and bool(
            getattr(view, "authentication_classes", None)
        )
        if needs_auth:
            codes += ["not_authenticated", "authentication_failed"]
        if self.method in ("POST", "PUT", "PATCH"):
            codes += ["validation_error", "parse_error", "payload_too_large"]
            codes.append("unsupported_media_type")
        if "{" in self.path or self._is_paginated():
            codes.append("not_found")
        if getattr(view, "throttle_classes", None):
            codes.append("throttled")
        return codes

    def get_operation_id(self) -> str:
        operation_id = super().get_operation_id()
        if self._is_paginated() and operation_id.endswith("_retrieve"):  # a collection
            operation_id = operation_id.removesuffix("_retrieve") + "_list"
        return operation_id

    def _is_paginated(self) -> bool:
        return self.method == "GET" and getattr(self.view, "paginated", False)

    def _get_response_bodies(self, direction="response") -> dict[str, Any]:
        responses = super()._get_response_bodies(direction)
        for code, response in responses.items():
            headers = response.setdefault("headers", {})
            if code == "201":
                headers["Location"] = _header("Location")
            for name in getattr(self.view, "response_headers", {}).get(self.method.lower(), []):
                headers[name] = _header(name)
            if not headers:
                del response["headers"]
        envelope = self.resolve_serializer(ErrorEnvelope, "response").ref
        by_status: dict[int, list[str]] = defaultdict(list)
        known = registry()
        for code in self._error_codes():
            by_status[known[code].http_status].append(code)
        for status in sorted(by_status):
            codes = sorted(set(by_status[status]))
            listed = "; ".join(f"`{c}`: {known[c].message}" for c in codes)
            entry: dict[str, Any] = {
                "description": f"Error envelope. Codes: {listed}",
                "content": {"application/json": {"schema": envelope}},
            }
            if status == 429 or any(c in RETRY_AFTER_CODES for c in codes):
                entry["headers"] = {"Retry-After": _header("Retry-After")}
            responses[str(status)] = entry
        return responses


# Errors that come with a Retry-After header.
RETRY_AFTER_CODES = {"idempotency_key_in_use", "poll_too_soon", "login_throttled", "throttled"}
