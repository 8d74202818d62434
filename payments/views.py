"""Pages: confirm and pay, the ticket, failures in plain words, my tickets."""

from __future__ import annotations

import uuid

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from concerts import selectors as concert_selectors
from concerts.exceptions import ReservationNotFound
from config.errors import DomainError
from config.idempotency import fingerprint, run_once, stored_answer
from payments import selectors, services
from payments.exceptions import PaymentNotFound
from queueing import services as queue_services
from queueing.exceptions import QueueGateError
from queueing.gate import token_key_from
from wallet import selectors as wallet_selectors

SCOPE = "payments.pay"

FAILURE_TEXT = {
    "insufficient_balance": (
        "Your wallet did not have enough for this seat, so nothing was charged and the "
        "seat was released for other fans."
    ),
    "hold_expired": "Your hold expired before payment, so the seat went back on sale.",
    "reservation_not_payable": "This reservation was cancelled, so it can no longer be paid.",
}


def _own_reservation(request: HttpRequest, reservation_id: int):
    try:
        return concert_selectors.reservation_get_for(
            user_id=request.user.pk, reservation_id=reservation_id
        )
    except ReservationNotFound as exc:
        raise Http404(exc.message) from exc


@login_required
def payment_confirm(request: HttpRequest, reservation_id: int) -> HttpResponse:
    """GET: the confirmation page. POST: pay now (at most once per form)."""
    reservation = _own_reservation(request, reservation_id)
    concert_id = reservation.schedule.concert_id
    now = timezone.now()
    key = request.POST.get("idempotency_key", "")
    print_ = fingerprint("POST", "/api/v1/payments", {"reservation_id": reservation_id})
    if request.method == "POST":
        answer = stored_answer(
            user_id=request.user.pk, scope=SCOPE, key=key, print_=print_, now=now
        )
        if answer is not None:  # a second click: show what the first one did
            return _outcome(request, reservation, *answer)
    if reservation.status == "confirmed":
        messages.info(request, "This seat is already paid for.")
        return redirect("tickets")
    try:
        queue_services.queue_gate_pass(
            key=token_key_from(request, concert_id=concert_id),
            user=request.user,
            concert_id=concert_id,
            now=now,
        )
    except QueueGateError as exc:
        messages.error(request, exc.message)
        return redirect("concert-detail", concert_id=concert_id)
    if request.method == "POST" and key:

        def execute():
            payment = services.payment_create(
                user=request.user, reservation_id=reservation_id, now=timezone.now()
            )
            return 201, {"payment_id": payment.pk}

        status, body, _ = run_once(
            user_id=request.user.pk,
            scope=SCOPE,
            key=key,
            print_=print_,
            now=now,
            execute=execute,
            render_error=lambda exc: (exc.http_status, {"code": exc.code, "message": exc.message}),
        )
        return _outcome(request, reservation, status, body)
    status = reservation.effective_status(now=now)
    return render(
        request,
        "payments/confirm.html",
        {
            "reservation": reservation,
            "status": status,
            "balance": wallet_selectors.wallet_balance(user_id=request.user.pk),
            "idempotency_key": uuid.uuid4().hex,
        },
    )


def _outcome(request: HttpRequest, reservation, status: int, body: dict) -> HttpResponse:
    if status == 201:
        return redirect("payment-detail", payment_id=body["payment_id"])
    if body.get("code") == "already_paid":
        messages.info(request, "This seat is already paid for.")
        return redirect("tickets")
    return render(
        request,
        "payments/failed.html",
        {
            "reservation": reservation,
            "code": body.get("code"),
            "text": FAILURE_TEXT.get(body.get("code"), body.get("message")),
        },
        status=status,
    )


@login_required
def payment_detail(request: HttpRequest, payment_id: int) -> HttpResponse:
    """Success: the ticket."""
    try:
        payment = selectors.payment_get_for(user_id=request.user.pk, payment_id=payment_id)
    except PaymentNotFound as exc:
        raise Http404(exc.message) from exc
    return render(request, "payments/ticket.html", {"payment": payment})


@login_required
def ticket_list(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    tickets = list(selectors.ticket_list_for(user_id=request.user.pk))
    for payment in tickets:
        payment.can_cancel = now < payment.reservation.schedule.booking_closes_at
    return render(request, "payments/tickets.html", {"tickets": tickets})


@require_POST
@login_required
def ticket_cancel(request: HttpRequest, reservation_id: int) -> HttpResponse:
    _own_reservation(request, reservation_id)
    try:
        result = services.booking_cancel(
            user_id=request.user.pk, reservation_id=reservation_id, now=timezone.now()
        )
    except DomainError as exc:
        messages.error(request, exc.message)
        return redirect("tickets")
    if result.refunded_amount:
        messages.success(
            request,
            f"Booking cancelled. ₩{result.refunded_amount:,} went back to your wallet.",
        )
    else:
        messages.info(request, "That booking was already cancelled.")
    return redirect("tickets")
