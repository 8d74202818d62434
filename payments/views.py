"""Pages: the hold, confirm and pay, the ticket, failures in plain words, my tickets,
cancel. Each command is one service call; the page renders its result or error."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from concerts import selectors as concert_selectors
from concerts.exceptions import ReservationNotFound
from config.errors import DomainError
from config.idempotency import Answer
from config.pages import is_form_key, new_form_key, show_error
from payments import selectors, services
from payments.exceptions import PaymentNotFound
from queueing import services as queue_services
from queueing.exceptions import QueueGateError
from queueing.gate import gate_refusal_page, token_key_from
from wallet import selectors as wallet_selectors

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
def reservation_detail(request: HttpRequest, reservation_id: int) -> HttpResponse:
    """The hold page: seat, price, a live countdown, Cancel and Pay."""
    reservation = _own_reservation(request, reservation_id)
    status = reservation.effective_status(now=timezone.now())
    if status == "expired" and reservation.status == "held":
        messages.error(request, "Your hold expired, so the seat went back on sale.")
    return render(
        request, "concerts/reservation.html", {"reservation": reservation, "status": status}
    )


def _top_up_for(shortfall: int) -> int:
    """The top-up that covers a shortfall, within the wallet's charge limits."""
    return max(shortfall, settings.WALLET_MIN_CHARGE) if shortfall > 0 else 0


@login_required
def cart_page(request: HttpRequest) -> HttpResponse:
    """The fan's held seats with one countdown, and one button per concert: pay, or
    top up the shortfall and pay, in one step (a short balance never costs a seat)."""
    cart = concert_selectors.cart_for(user_id=request.user.pk, now=timezone.now())
    balance = wallet_selectors.wallet_balance(user_id=request.user.pk)
    groups = []
    for concert, seats in cart.by_concert():
        total = sum(seat.price for seat in seats)
        groups.append(
            {
                "concert": concert,
                "seats": seats,
                "total": total,
                "shortfall": max(0, total - balance),
                "top_up": _top_up_for(total - balance),
                "expires_at": min(seat.expires_at for seat in seats),
            }
        )
    return render(
        request,
        "payments/cart.html",
        {"groups": groups, "balance": balance, "idempotency_key": new_form_key()},
    )


@require_POST
@login_required
def cart_checkout(request: HttpRequest, concert_id: int) -> HttpResponse:
    """Pay every held seat of one concert in one checkout (topping up first if asked)."""
    key = request.POST.get("idempotency_key")
    if not is_form_key(key):
        messages.error(request, "The form expired; please try again.")
        return redirect("cart")
    cart = concert_selectors.cart_for(user_id=request.user.pk, now=timezone.now())
    seat_ids = [hold.pk for hold in cart.holds if hold.schedule.concert_id == concert_id]
    if not seat_ids:
        messages.error(request, "Your hold on these seats has ended; pick them again.")
        return redirect("concert-detail", concert_id=concert_id)
    try:
        top_up = int(request.POST.get("top_up") or 0)
    except ValueError:
        top_up = 0
    try:
        answer = services.checkout_submit(
            user=request.user,
            reservation_ids=seat_ids,
            queue_key=token_key_from(request, concert_id=concert_id),
            idempotency_key=key,
            now=timezone.now(),
            top_up=max(0, top_up),
        )
    except QueueGateError as exc:
        return gate_refusal_page(request, exc, concert_id=concert_id)
    except DomainError as exc:
        show_error(request, exc)
        return redirect("cart")
    if answer.status != 201:
        messages.error(request, answer.body["error"]["message"])
        return redirect("cart")
    count = len(answer.body["payments"])
    messages.success(request, f"You're going! {count} ticket{'s' if count > 1 else ''} booked.")
    return redirect("tickets")


@login_required
def payment_confirm(request: HttpRequest, reservation_id: int) -> HttpResponse:
    """GET: the confirmation page, for a fan whose turn is live. POST: pay, through
    payment_submit, at most once per form (the form carries its Idempotency-Key)."""
    reservation = _own_reservation(request, reservation_id)
    concert_id = reservation.schedule.concert_id
    queue_key = token_key_from(request, concert_id=concert_id)
    if request.method == "POST":
        key = request.POST.get("idempotency_key")
        if not is_form_key(key):
            messages.error(request, "The form expired; please try again.")
            return redirect("payment-confirm", reservation_id=reservation_id)
        try:
            answer = services.payment_submit(
                user=request.user,
                reservation_id=reservation_id,
                queue_key=queue_key,
                idempotency_key=key,
                now=timezone.now(),
            )
        except QueueGateError as exc:
            return gate_refusal_page(request, exc, concert_id=concert_id)
        except DomainError as exc:
            show_error(request, exc)
            return redirect("payment-confirm", reservation_id=reservation_id)
        return _outcome(request, reservation, answer)
    if reservation.status == "confirmed":
        messages.info(request, "This seat is already paid for.")
        return redirect("tickets")
    try:
        queue_services.queue_gate_pass(
            key=queue_key, user=request.user, concert_id=concert_id, now=timezone.now()
        )
    except QueueGateError as exc:
        return gate_refusal_page(request, exc, concert_id=concert_id)
    balance = wallet_selectors.wallet_balance(user_id=request.user.pk)
    return render(
        request,
        "payments/confirm.html",
        {
            "reservation": reservation,
            "status": reservation.effective_status(now=timezone.now()),
            "balance": balance,
            "shortfall": max(0, reservation.price - balance),
            "idempotency_key": new_form_key(),
        },
    )


def _outcome(request: HttpRequest, reservation, answer: Answer) -> HttpResponse:
    """Render payment_submit's answer (the same body the API returns)."""
    if answer.status == 201:
        return redirect("payment-detail", payment_id=answer.body["payment_id"])
    error = answer.body["error"]
    if error["code"] == "already_paid":
        messages.info(request, "This seat is already paid for.")
        return redirect("tickets")
    return render(
        request,
        "payments/failed.html",
        {
            "reservation": reservation,
            "code": error["code"],
            "text": FAILURE_TEXT.get(error["code"], error["message"]),
        },
        status=answer.status,
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
def reservation_cancel(request: HttpRequest, reservation_id: int) -> HttpResponse:
    """Cancel from the hold page (the seat is released) or from My tickets (refunded)."""
    try:
        result = services.booking_cancel(
            user_id=request.user.pk, reservation_id=reservation_id, now=timezone.now()
        )
    except ReservationNotFound as exc:
        raise Http404(exc.message) from exc
    except DomainError as exc:
        show_error(request, exc)
        return redirect("tickets")
    reservation = result.reservation
    if result.status_before == "held":
        messages.info(request, f"Seat {reservation.seat.number} was released.")
        return redirect(
            "booking-date",
            concert_id=reservation.schedule.concert_id,
            schedule_id=reservation.schedule_id,
        )
    if result.status_before == "confirmed":
        messages.success(
            request, f"Booking cancelled. ₩{result.refunded_amount:,} went back to your wallet."
        )
    else:
        messages.info(request, "That booking was already cancelled.")
    return redirect("tickets")
