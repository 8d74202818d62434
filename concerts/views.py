"""Fan pages for the catalogue."""

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from concerts import selectors
from concerts.exceptions import ConcertNotFound
from queueing.gate import queue_gate_required


def home(request: HttpRequest) -> HttpResponse:
    return render(request, "concerts/home.html", {"concerts": selectors.concert_list()})


def concert_detail(request: HttpRequest, concert_id: int) -> HttpResponse:
    try:
        concert = selectors.concert_get_with_schedules(concert_id=concert_id)
    except ConcertNotFound as exc:
        raise Http404(exc.message) from exc
    return render(request, "concerts/detail.html", {"concert": concert})


@queue_gate_required(lambda concert_id: concert_id)
def booking(request: HttpRequest, concert_id: int) -> HttpResponse:
    """The admitted fan's booking page (dates and seats arrive with the holds issue)."""
    concert = selectors.concert_get_with_schedules(concert_id=concert_id)
    return render(
        request, "concerts/booking.html", {"concert": concert, "token": request.queue_token}
    )
