"""The live sale dashboard for operators (an admin page per concert, refreshed by htmx).

Reads: payments.selectors.sale_dashboard. Controls: each POST is one queueing service
call, which records the action with the operator's name in the audit log.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.views.decorators.http import require_POST

from concerts.exceptions import ConcertNotFound
from config.audit import operator_actions_for
from config.errors import DomainError
from payments import selectors
from queueing import services as queue_services
from queueing.exceptions import CapacityInvalid


def sparkline(values: list[int], *, label: str, width: int = 300, height: int = 56) -> SafeString:
    """A small server-rendered SVG line chart of `values` (oldest first), with its
    latest value and peak in the accessible label."""
    peak = max(values, default=0)
    top = max(peak, 1)
    step = width / max(len(values) - 1, 1)
    points = " ".join(
        f"{i * step:.1f},{height - 4 - (v / top) * (height - 8):.1f}" for i, v in enumerate(values)
    )
    latest = values[-1] if values else 0
    return format_html(
        '<svg class="sparkline" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" '
        'aria-label="{label}: {latest} now, peak {peak}, last 30 minutes">'
        '<polyline fill="none" stroke="currentColor" stroke-width="2" points="{points}"/></svg>',
        w=width, h=height, label=label, latest=latest, peak=peak, points=points,
    )  # fmt: skip


def _context(request: HttpRequest, concert_id: int) -> dict:
    board = selectors.sale_dashboard(concert_id=concert_id, now=timezone.now())
    room = board.room
    eta = room.eta_seconds
    return {
        "board": board,
        "eta": None if eta is None else (f"{eta} s" if eta < 120 else f"{round(eta / 60)} min"),
        "charts": [
            ("In line", sparkline(room.waiting_series, label="Fans in line")),
            ("Active turns", sparkline(room.active_series, label="Active turns")),
            ("Admissions a minute", sparkline(room.admissions_series, label="Admissions")),
            ("Seats sold a minute", sparkline(board.sales_series, label="Seats sold")),
            (
                "Early polls refused a minute",
                sparkline(room.early_polls_series, label="Early polls"),
            ),
        ],
        "actions": operator_actions_for(concert_id=concert_id),
        "concert_id": concert_id,
    }


def _or_404(view):
    def wrapped(request: HttpRequest, concert_id: int) -> HttpResponse:
        try:
            return view(request, concert_id)
        except ConcertNotFound as exc:
            raise Http404(exc.message) from exc

    return wrapped


@_or_404
def dashboard_page(request: HttpRequest, concert_id: int) -> HttpResponse:
    live = _context(request, concert_id)
    context = {
        **admin.site.each_context(request),
        **live,
        "title": f"Live sale: {live['board'].concert.title}",
    }
    return render(request, "admin/payments/sale_dashboard.html", context)


@_or_404
def dashboard_live(request: HttpRequest, concert_id: int) -> HttpResponse:
    return render(request, "admin/payments/_sale_live.html", _context(request, concert_id))


@require_POST
def dashboard_control(request: HttpRequest, concert_id: int) -> HttpResponse:
    """One control, one service call (logged with the operator's name)."""
    action, now, operator = request.POST.get("action"), timezone.now(), request.user
    try:
        if action in ("pause", "resume"):
            queue_services.queue_operator_pause(
                concert_id=concert_id, paused=action == "pause", operator=operator, now=now
            )
            messages.success(request, "Admission paused." if action == "pause" else "Resumed.")
        elif action == "capacity":
            raw = (request.POST.get("max_active") or "").strip()
            if raw and not raw.isdigit():
                raise CapacityInvalid()
            queue_services.queue_operator_capacity(
                concert_id=concert_id, max_active=int(raw) if raw else None,
                operator=operator, now=now,
            )  # fmt: skip
            messages.success(request, f"Capacity set to {raw or 'the default'}.")
        elif action == "admit":
            raw = (request.POST.get("count") or "").strip()
            count = int(raw) if raw.isdigit() else 0
            admitted = queue_services.queue_operator_admit(
                concert_id=concert_id, count=count, operator=operator, now=now
            )
            messages.success(request, f"Admitted {len(admitted)} fan(s).")
        elif action == "end_all":
            if request.POST.get("confirm") != "yes":
                messages.error(request, "Tick the box to confirm ending every active turn.")
            else:
                ended = queue_services.queue_operator_end_all_turns(
                    concert_id=concert_id, operator=operator, now=now
                )
                messages.success(request, f"Ended {ended} active turn(s).")
        else:
            messages.error(request, "Unknown control.")
    except DomainError as exc:
        messages.error(request, exc.message)
    return redirect("admin:sale-dashboard", concert_id=concert_id)
