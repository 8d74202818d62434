"""Fan pages for the catalogue."""

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from concerts import selectors
from concerts.exceptions import ConcertNotFound


def home(request: HttpRequest) -> HttpResponse:
    return render(request, "concerts/home.html", {"concerts": selectors.concert_list()})


def concert_detail(request: HttpRequest, concert_id: int) -> HttpResponse:
    try:
        concert = selectors.concert_get_with_schedules(concert_id=concert_id)
    except ConcertNotFound as exc:
        raise Http404(exc.message) from exc
    return render(request, "concerts/detail.html", {"concert": concert})
