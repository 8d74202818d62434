"""Waiting-room pages: join, wait (polling), leave."""

from __future__ import annotations

import contextlib
import dataclasses

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseClientRedirect

from config.errors import DomainError
from queueing import selectors, services
from queueing.exceptions import ConcertNotFound, QueueTokenInvalid, QueueTokenUnknown
from queueing.gate import forget_token, remember_token, token_key_from


@require_POST
@login_required
def queue_join(request: HttpRequest, concert_id: int) -> HttpResponse:
    try:
        token, _ = services.queue_token_issue(
            user=request.user, concert_id=concert_id, now=timezone.now()
        )
    except ConcertNotFound as exc:
        messages.error(request, exc.message)
        return redirect("home")
    except DomainError as exc:  # not open yet, and the like: said on the concert's page
        messages.error(request, exc.message)
        return redirect("concert-detail", concert_id=concert_id)
    remember_token(request, concert_id=concert_id, key=token.key)
    return redirect("queue-room", concert_id=concert_id)


def _current_view(request: HttpRequest, concert_id: int):
    token = selectors.queue_token_get(key=token_key_from(request, concert_id=concert_id) or "")
    if token is None or token.user_id != request.user.pk:
        return None
    now = timezone.now()
    view = selectors.queue_token_view(token=token, now=now)
    if view.status == token.Status.WAITING:
        services.queue_token_touch(token=token, now=now)
        if selectors.room_is_paused(concert_id=concert_id):
            view = dataclasses.replace(view, paused=True)
    return view


def _progress(request: HttpRequest, view) -> int:
    """How far the fan has come since joining (their starting place is kept in the session)."""
    if view.status == "active":
        return 100
    starts = request.session.get("queue_start_positions", {})
    start = starts.get(view.token.key)
    if start is None and view.position:
        start = view.position
        request.session["queue_start_positions"] = {**starts, view.token.key: start}
    if not view.position or not start:
        return 0
    return max(0, min(99, round(100 * (start - view.position) / max(1, start))))


@login_required
def queue_room(request: HttpRequest, concert_id: int) -> HttpResponse:
    view = _current_view(request, concert_id)
    if view is None:
        messages.info(request, "Get in line first.")
        return redirect("concert-detail", concert_id=concert_id)
    if view.status == "active":
        return redirect("booking", concert_id=concert_id)
    return render(
        request,
        "queueing/room.html",
        {"view": view, "concert_id": concert_id, "progress": _progress(request, view)},
    )


@login_required
def queue_room_status(request: HttpRequest, concert_id: int) -> HttpResponse:
    """The htmx fragment: re-renders itself after poll_after_seconds."""
    view = _current_view(request, concert_id)
    if view is None or view.status == "active":
        target = (
            reverse("booking", kwargs={"concert_id": concert_id})
            if view
            else reverse("concert-detail", kwargs={"concert_id": concert_id})
        )
        return HttpResponseClientRedirect(target)
    return render(
        request,
        "queueing/_status.html",
        {"view": view, "concert_id": concert_id, "progress": _progress(request, view)},
    )


@require_POST
@login_required
def queue_leave(request: HttpRequest, concert_id: int) -> HttpResponse:
    key = token_key_from(request, concert_id=concert_id) or ""
    with contextlib.suppress(QueueTokenUnknown, QueueTokenInvalid):  # nothing to leave
        services.queue_leave(key=key, user_id=request.user.pk, now=timezone.now())
    forget_token(request, concert_id=concert_id)
    messages.info(request, "You left the line.")
    return redirect("concert-detail", concert_id=concert_id)
