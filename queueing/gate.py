"""The waiting-room gate, for API views and for pages.

Both call services.queue_gate_pass, so the rules are the same everywhere:
an active token for the concert being accessed, owned by the requesting user.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils import timezone
from rest_framework.permissions import BasePermission

from config.api import QUEUE_TOKEN_HEADER as HEADER
from config.api import request_header
from config.cache import Reply, RoundTrip
from config.pages import show_error
from queueing import services
from queueing.exceptions import QueueGateError, QueueTokenWaiting

SESSION_KEY = "queue_tokens"


def remember_token(request: HttpRequest, *, concert_id: int, key: str) -> None:
    """Pages keep each concert's token in the session (API clients send the header)."""
    tokens = dict(request.session.get(SESSION_KEY, {}))
    tokens[str(concert_id)] = key
    request.session[SESSION_KEY] = tokens


def forget_token(request: HttpRequest, *, concert_id: int) -> None:
    tokens = dict(request.session.get(SESSION_KEY, {}))
    tokens.pop(str(concert_id), None)
    request.session[SESSION_KEY] = tokens


def token_key_from(request: HttpRequest, *, concert_id: int | None = None) -> str | None:
    key = request_header(request, HEADER)
    if not key and concert_id is not None and hasattr(request, "session"):
        key = request.session.get(SESSION_KEY, {}).get(str(concert_id))
    return key or None


def queue_gate_codes() -> list[str]:
    """The error codes the gate answers with (for the API schema)."""
    from queueing.exceptions import QueueGateError

    return sorted(cls.code for cls in QueueGateError.__subclasses__())


class QueueGate(BasePermission):
    """DRF permission. The view says which concert is accessed via
    `queue_concert_id(request) -> int`; the pass is stored on `request.queue_token`."""

    def has_permission(self, request, view) -> bool:
        if not request.user or not request.user.is_authenticated:
            return False  # IsAuthenticated, listed first, answers 401
        request.queue_token = gate_pass(request, concert_id=view.queue_concert_id(request))
        return True


def gate_pass(request: HttpRequest, *, concert_id: int, mirrored: Reply | None = None):
    """The gate for an API request (its user, the token in X-Queue-Token): the pass,
    or the refusal raised. Used by QueueGate and by config.fastlane's lanes, which
    pass the read `gate_later` made in their round trip."""
    return services.queue_gate_pass(
        key=request_header(request, HEADER), user=request.user, concert_id=concert_id,
        now=timezone.now(), mirrored=mirrored,
    )  # fmt: skip


def gate_later(trip: RoundTrip, request: HttpRequest) -> Reply:
    """gate_pass's Redis read, in a RoundTrip."""
    key = request_header(request, HEADER)
    return services.queue_gate_pass_later(trip, key=key, now=timezone.now())


def gate_refusal_page(request: HttpRequest, exc: QueueGateError, *, concert_id: int):
    """Where a page sends a fan the gate refused: a waiting fan back to the waiting
    room; anyone else to the concert, with the reason in plain words."""
    if isinstance(exc, QueueTokenWaiting):
        return redirect("queue-room", concert_id=concert_id)
    show_error(request, exc)
    return redirect("concert-detail", concert_id=concert_id)


def queue_gate_required(
    concert_id_from: Callable[..., int],
) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """Page decorator: `concert_id_from(**view_kwargs)` names the concert."""

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            concert_id = concert_id_from(**kwargs)
            if not request.user.is_authenticated:
                return redirect(f"/accounts/login/?next={request.path}")
            try:
                request.queue_token = services.queue_gate_pass(
                    key=token_key_from(request, concert_id=concert_id),
                    user=request.user,
                    concert_id=concert_id,
                    now=timezone.now(),
                )
            except QueueGateError as exc:
                return gate_refusal_page(request, exc, concert_id=concert_id)
            return view(request, *args, **kwargs)

        return wrapped

    return decorator
