"""Fan pages for the catalogue."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from concerts import selectors, services
from concerts.exceptions import ConcertNotFound
from config.errors import DomainError
from config.pages import show_error
from queueing.exceptions import QueueGateError
from queueing.gate import (
    gate_refusal_page,
    queue_gate_required,
    remember_token,
    token_key_from,
)


def home(request: HttpRequest) -> HttpResponse:
    concerts = selectors.concert_list_for_shop(now=timezone.now())
    return render(request, "concerts/home.html", {"concerts": concerts})


def concert_detail(request: HttpRequest, concert_id: int) -> HttpResponse:
    try:
        concert = selectors.concert_get_with_schedules(concert_id=concert_id)
    except ConcertNotFound as exc:
        raise Http404(exc.message) from exc
    sold_out = selectors.schedule_ids_sold_out(concert_id=concert_id, now=timezone.now())
    return render(request, "concerts/detail.html", {"concert": concert, "sold_out": sold_out})


@require_POST
@login_required
def waitlist_join(request: HttpRequest, concert_id: int, schedule_id: int) -> HttpResponse:
    """Join a sold-out date's waitlist (one service call); the waitlist page follows."""
    try:
        services.waitlist_join(user=request.user, schedule_id=schedule_id, now=timezone.now())
    except DomainError as exc:
        show_error(request, exc)
        return redirect("concert-detail", concert_id=concert_id)
    messages.success(request, "You are on the waitlist. We offer you a seat the moment one frees.")
    return redirect("waitlist")


@require_POST
@login_required
def waitlist_leave(request: HttpRequest, schedule_id: int) -> HttpResponse:
    try:
        services.waitlist_leave(
            user_id=request.user.pk, schedule_id=schedule_id, now=timezone.now()
        )
    except DomainError as exc:
        show_error(request, exc)
    else:
        messages.info(request, "You left the waitlist.")
    return redirect("waitlist")


def _waitlist_context(request: HttpRequest) -> dict:
    entries = selectors.waitlist_for_user(user_id=request.user.pk, now=timezone.now())
    for entry in entries:
        if entry.offer_token:  # the turn that came with the offer lets the cart pay it
            remember_token(request, concert_id=entry.schedule.concert_id, key=entry.offer_token)
    return {"entries": entries}


@login_required
def waitlist_page(request: HttpRequest) -> HttpResponse:
    return render(request, "concerts/waitlist.html", _waitlist_context(request))


@login_required
def waitlist_fragment(request: HttpRequest) -> HttpResponse:
    """The entries alone, for htmx to refresh while the fan waits for an offer."""
    return render(request, "concerts/_waitlist.html", _waitlist_context(request))


def _gated(view):
    return queue_gate_required(lambda concert_id, **_: concert_id)(view)


@_gated
def booking(request: HttpRequest, concert_id: int, schedule_id: int | None = None) -> HttpResponse:
    """The admitted fan's booking page: dates with available counts, then a seat map."""
    now = timezone.now()
    concert = selectors.concert_get_with_schedules(concert_id=concert_id)
    dates = selectors.schedule_list_bookable(concert_id=concert_id, now=now)
    schedule = None
    if schedule_id is None and dates:
        schedule_id = dates[0].id
    if schedule_id is not None:
        schedule = next((d for d in concert.schedules.all() if d.id == schedule_id), None)
        if schedule is None:
            raise Http404("No such date for this concert.")
    context = {
        "concert": concert,
        "dates": dates,
        "schedule": schedule,
        "seats": selectors.seat_map(schedule=schedule, now=now, user_id=request.user.pk)
        if schedule
        else [],
        "token": request.queue_token,
    }
    return render(request, "concerts/booking.html", context)


@_gated
def seat_map_fragment(request: HttpRequest, concert_id: int, schedule_id: int) -> HttpResponse:
    """The seat map alone, for htmx to refresh every few seconds."""
    schedule = selectors.schedule_get(schedule_id=schedule_id)
    if schedule.concert_id != concert_id:
        raise Http404("No such date for this concert.")
    seats = selectors.seat_map(schedule=schedule, now=timezone.now(), user_id=request.user.pk)
    return render(
        request,
        "concerts/_seat_map.html",
        {"concert_id": concert_id, "schedule": schedule, "seats": seats},
    )


@require_POST
@login_required
def seat_hold(request: HttpRequest, concert_id: int, schedule_id: int) -> HttpResponse:
    """Picking a seat holds it: one service call, which checks the fan's turn itself
    (for the date's own concert, so a URL naming another concert holds nothing)."""
    back = redirect("booking-date", concert_id=concert_id, schedule_id=schedule_id)
    try:
        seat_number = int(request.POST.get("seat_number", ""))
    except ValueError:
        messages.error(request, "Please pick a seat from the map.")
        return back
    try:
        services.seat_hold_create(
            user=request.user,
            schedule_id=schedule_id,
            seat_number=seat_number,
            queue_key=token_key_from(request, concert_id=concert_id),
            now=timezone.now(),
        )
    except QueueGateError as exc:
        return gate_refusal_page(request, exc, concert_id=concert_id)
    except DomainError as exc:
        show_error(request, exc)
        return back
    messages.success(
        request, f"Seat {seat_number} is in your cart. Pick more, or go to checkout to pay."
    )
    return back
