"""Fan pages for the catalogue."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from concerts import selectors, services
from concerts.exceptions import ConcertNotFound, ReservationNotFound
from config.errors import DomainError
from queueing.gate import queue_gate_required


def home(request: HttpRequest) -> HttpResponse:
    return render(request, "concerts/home.html", {"concerts": selectors.concert_list()})


def concert_detail(request: HttpRequest, concert_id: int) -> HttpResponse:
    try:
        concert = selectors.concert_get_with_schedules(concert_id=concert_id)
    except ConcertNotFound as exc:
        raise Http404(exc.message) from exc
    return render(request, "concerts/detail.html", {"concert": concert})


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
@_gated
def seat_hold(request: HttpRequest, concert_id: int, schedule_id: int) -> HttpResponse:
    """Picking a seat holds it."""
    back = redirect("booking-date", concert_id=concert_id, schedule_id=schedule_id)
    try:
        seat_number = int(request.POST.get("seat_number", ""))
        schedule = selectors.schedule_get(schedule_id=schedule_id)
        if schedule.concert_id != concert_id:
            raise Http404("No such date for this concert.")
        reservation = services.seat_hold_create(
            user=request.user, schedule_id=schedule_id, seat_number=seat_number, now=timezone.now()
        )
    except ValueError:
        messages.error(request, "Please pick a seat from the map.")
        return back
    except DomainError as exc:
        messages.error(request, exc.message)
        return back
    messages.success(request, f"Seat {seat_number} is yours for the next few minutes.")
    return redirect("reservation-detail", reservation_id=reservation.pk)


@login_required
def reservation_detail(request: HttpRequest, reservation_id: int) -> HttpResponse:
    """The hold page: seat, price, a live countdown, Cancel and Pay."""
    try:
        reservation = selectors.reservation_get_for(
            user_id=request.user.pk, reservation_id=reservation_id
        )
    except ReservationNotFound as exc:
        raise Http404(exc.message) from exc
    status = reservation.effective_status(now=timezone.now())
    if status == "expired" and reservation.status == "held":
        messages.error(request, "Your hold expired, so the seat went back on sale.")
    return render(
        request,
        "concerts/reservation.html",
        {"reservation": reservation, "status": status},
    )


@require_POST
@login_required
def reservation_cancel(request: HttpRequest, reservation_id: int) -> HttpResponse:
    try:
        reservation = services.reservation_cancel(
            user_id=request.user.pk, reservation_id=reservation_id, now=timezone.now()
        )
    except ReservationNotFound as exc:
        raise Http404(exc.message) from exc
    except DomainError as exc:
        messages.error(request, exc.message)
        return redirect("reservation-detail", reservation_id=reservation_id)
    messages.info(request, f"Seat {reservation.seat.number} was released.")
    return redirect(
        "booking-date",
        concert_id=reservation.schedule.concert_id,
        schedule_id=reservation.schedule_id,
    )
