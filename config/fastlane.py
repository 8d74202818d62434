"""The fast lane: a few hot, plain GETs answered through a short middleware chain.

A fan's poll (`GET /api/v1/queue` with the token in X-Queue-Token) is the one
request the whole waiting room repeats, thousands of times a second on sale day.
It needs no session, no CSRF check, no user and no URL resolving, yet the full
Django stack and DRF's dispatch cost more than the poll's own work (one Redis round
trip). So the WSGI application routes such a request to its view directly, through
the middleware that shapes its answer (`LANE_MIDDLEWARE`: the security headers, the
SSL redirect, HSTS, X-Frame-Options, Content-Length), with Django's own request
lifecycle: the script prefix, `request_started`, a `WSGIRequest`, exceptions turned
into responses, and `request_finished` when the server closes the response.

A request takes the lane only when it is plain: the method is GET, the path is a
lane's path, there is no query string, no Authorization header, no session cookie,
an Accept header the JSON renderer satisfies (or none), and a host Django accepts.
Anything else goes the full way, to the same command's DRF view, which also
answers every case the lane never sees (a signed-in poller must own the token).
The answer is the same either way: tests compare the two, status, headers and
body, in every state a poll can answer.

`FAST_LANE=0` turns the lane off (every request then goes the full way).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from django.conf import settings
from django.core import signals
from django.core.exceptions import DisallowedHost
from django.core.handlers.exception import convert_exception_to_response
from django.core.handlers.wsgi import WSGIHandler, WSGIRequest, get_script_name
from django.http import HttpRequest, HttpResponse
from django.urls import set_script_prefix
from django.utils.module_loading import import_string

# The middleware a lane's answer goes through, outermost first. Every other entry
# of settings.MIDDLEWARE must be in SKIPPED, with the reason it does nothing for a
# plain GET without cookies (a test holds the two lists to settings.MIDDLEWARE).
LANE_MIDDLEWARE = (
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
)
SKIPPED = {
    "whitenoise.middleware.WhiteNoiseMiddleware": "serves /static/ only",
    "django.contrib.sessions.middleware.SessionMiddleware": "no session cookie on the lane",
    "django.middleware.csrf.CsrfViewMiddleware": "a GET is never checked, nothing sets "
    "the CSRF cookie on the lane",
    "django.contrib.auth.middleware.AuthenticationMiddleware": "a lane view has no user",
    "django.contrib.messages.middleware.MessageMiddleware": "no session, no messages",
    "django_htmx.middleware.HtmxMiddleware": "an API answer is no htmx page",
}
ACCEPTED = {"", "*/*", "application/json", "application/*"}


def _chain(view: Callable[[HttpRequest], HttpResponse]) -> Callable[[HttpRequest], HttpResponse]:
    """`view` wrapped in LANE_MIDDLEWARE as Django's handler wraps a view (each layer
    turns an exception into a response)."""
    handler = convert_exception_to_response(view)
    for path in reversed(LANE_MIDDLEWARE):
        handler = convert_exception_to_response(import_string(path)(handler))
    return handler


class FastLane:
    """A WSGI application: a plain GET on a lane's path is answered by its view
    through the short chain; everything else by `app` (Django's full handler)."""

    def __init__(self, app: Callable, lanes: dict[str, Callable[[HttpRequest], HttpResponse]]):
        self.app = app
        self.lanes = {path: _chain(view) for path, view in lanes.items()}
        self.session_cookie = settings.SESSION_COOKIE_NAME + "="

    def plain(self, environ: dict) -> bool:
        return (
            environ.get("REQUEST_METHOD") == "GET"
            and not environ.get("QUERY_STRING")
            and "HTTP_AUTHORIZATION" not in environ
            and self.session_cookie not in environ.get("HTTP_COOKIE", "")
            and environ.get("HTTP_ACCEPT", "").strip() in ACCEPTED
        )

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        handler = self.lanes.get(environ.get("PATH_INFO", ""))
        if handler is None or not self.plain(environ):
            return self.app(environ, start_response)
        request = WSGIRequest(environ)
        try:
            request.get_host()
        except DisallowedHost:  # the full way answers it (400, and the security log)
            return self.app(environ, start_response)
        # What WSGIHandler.__call__ does around a request, in the same order.
        set_script_prefix(get_script_name(environ))
        signals.request_started.send(sender=WSGIHandler, environ=environ)
        response = handler(request)
        response._handler_class = WSGIHandler  # request_finished is sent on close()
        start_response(
            f"{response.status_code} {response.reason_phrase}",
            [
                *response.items(),
                *(("Set-Cookie", c.OutputString()) for c in response.cookies.values()),
            ],
        )
        return response


def lanes() -> dict[str, Callable[[HttpRequest], HttpResponse]]:
    """The lanes: path -> view. Each view is the plain twin of a DRF view's GET."""
    from queueing.api import poll_lane

    return {"/api/v1/queue": poll_lane}
