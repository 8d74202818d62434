"""The fast lane: the hottest requests answered through a short middleware chain.

A fan's poll (`GET /api/v1/queue` with the token in X-Queue-Token) is the request
the whole waiting room repeats, thousands of times a second on sale day; an
admitted fan's seat map (`GET /api/v1/schedules/{id}/seats`), hold (`POST
/api/v1/reservations`) and payment (`POST /api/v1/payments`), and the line-up,
top-up and leave around them, come next. They need
no session, no CSRF check and no URL resolving, and their work is one or two round
trips, yet the full Django stack and DRF's dispatch cost more than that work. So
the WSGI application routes such a request to its view directly, through the
middleware that shapes its answer (`LANE_MIDDLEWARE`: the security headers, the SSL
redirect, HSTS, X-Frame-Options, Content-Length), with Django's own request
lifecycle: the script prefix, `request_started`, a `WSGIRequest`, exceptions turned
into responses, and `request_finished` when the server closes the response.

A request takes a lane only when it is plain: the lane's method and path, no query
string, no session cookie, and an Accept header the JSON renderer satisfies (or
none). A lane that needs the fan (`api_token`) also needs an API token of DRF's
shape that DRF's own authenticator accepts (cached; its cache read goes to Redis in
one round trip with the view's own reads, `prefetch`; a key the cache lacks is read
from PostgreSQL by itself, or with `auth_on_miss` in the view's first statement; with
`own_auth` the view's statement reads every key, and no cache). A lane that does not
need the fan takes no Authorization header at all. A POST whose view reads a body
also needs a small JSON body the lane's `body` check accepts. Anything else goes the
full way, to the same command's DRF view, which also answers every refusal the lane
never sees (400, 401, 406...). The answer is the same either way: tests compare the
two, status, headers and body, in every state each lane answers.

`FAST_LANE=0` turns the lanes off (every request then goes the full way).
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core import signals
from django.core.handlers.exception import convert_exception_to_response
from django.core.handlers.wsgi import WSGIHandler, WSGIRequest, get_script_name
from django.http import HttpRequest, HttpResponse
from django.urls import set_script_prefix
from django.utils.module_loading import import_string
from rest_framework import serializers
from rest_framework.renderers import JSONRenderer
from rest_framework.views import APIView

from config.api import StrictIntegerField, answer_headers
from config.auth import PLAIN_TOKEN, credentials, credentials_cached, credentials_later
from config.cache import RoundTrip, carry_writes
from config.errors import DomainError
from config.idempotency import Answer

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
    "django.contrib.sessions.middleware.SessionMiddleware": "no session cookie on a lane",
    "django.middleware.csrf.CsrfViewMiddleware": "a GET is never checked; a lane's POST "
    "is token-authenticated, and its DRF view is csrf_exempt; nothing sets the CSRF "
    "cookie on a lane",
    "django.contrib.auth.middleware.AuthenticationMiddleware": "a lane's fan comes from "
    "the API token, as in DRF",
    "django.contrib.messages.middleware.MessageMiddleware": "no session, no messages",
    "django_htmx.middleware.HtmxMiddleware": "an API answer is no htmx page",
}
ACCEPTED = {"", "*/*", "application/json", "application/*"}


@dataclass(frozen=True)
class Lane:
    """`pattern` is matched against the whole path; its groups (digits) are passed to
    `view` as ints, after the request. With `api_token`, request.user is the fan the
    request's API token names (else the request goes the full way). The token's
    cache read and the `prefetch` reads go to Redis together, in one round trip."""

    pattern: str
    view: Callable[..., HttpResponse]
    api_token: bool = False
    # Adds the view's Redis reads to the request's RoundTrip (with the API token's),
    # given the request and the path's numbers; what it returns is request.prefetched.
    prefetch: Callable[..., Any] | None = None
    # "POST": a plain POST has a small JSON body that `body` accepts (see plain_input);
    # the accepted input is request.lane_input. Anything else goes the full way.
    method: str = "GET"
    body: Callable[[Any], dict | None] | None = None
    # With api_token: the view authenticates the key itself, in its own first
    # statement (no cache read first): request.api_key is the key, and the view
    # answers FullWay() if it names no active fan (DRF's authentication then answers).
    own_auth: bool = False
    # With api_token: a key the cache lacks (or Redis down) is not read by itself
    # first. request.user is None and request.api_key the key, which the view
    # authenticates in its own first statement (the hold's: the date's read), one
    # round trip fewer for a fan's first request; it answers FullWay() for a key that
    # names no active fan (DRF's authentication then answers). A cached key is as
    # with api_token alone.
    auth_on_miss: bool = False
    # Without api_token: the request may also carry an API token (the poll, whose DRF
    # view checks that a signed-in poller owns the token, after the poll). Then
    # request.user is the fan the token's cache entry names, read before the view;
    # a token the cache does not hold goes the full way, untouched, which reads it
    # (and fills the cache) only after the poll, as DRF's lazy authentication does.
    # (The cache read cannot ride with the poll's: the poll's read paces the poll, so
    # the full way would then find it early.) Without one, request.user is None.
    token_optional: bool = False


class FullWay(HttpResponse):
    """A lane view's answer that it does not answer: the request goes the full way."""


def _chain(view: Callable[..., HttpResponse]) -> Callable[[HttpRequest], HttpResponse]:
    """`view` wrapped in LANE_MIDDLEWARE as Django's handler wraps a view (each layer
    turns an exception into a response). The path's numbers come in `lane_args`."""

    def call_view(request: HttpRequest) -> HttpResponse:
        return view(request, *request.lane_args)

    handler = convert_exception_to_response(call_view)
    for path in reversed(LANE_MIDDLEWARE):
        handler = convert_exception_to_response(import_string(path)(handler))
    return handler


class FastLane:
    """A WSGI application: a plain GET on a lane's path is answered by its view
    through the short chain; everything else by `app` (Django's full handler)."""

    def __init__(self, app: Callable, lanes: Iterable[Lane]) -> None:
        self.app = app
        # Lanes by (method, path): one path may have a lane per method (the poll's GET
        # and the leave's DELETE of /api/v1/queue).
        self.exact: dict[tuple[str, str], tuple[Lane, Callable]] = {}
        self.patterns: list[tuple[str, re.Pattern, Lane, Callable]] = []
        for lane in lanes:
            if re.escape(lane.pattern) == lane.pattern:
                self.exact[lane.method, lane.pattern] = (lane, _chain(lane.view))
            else:
                compiled = re.compile(lane.pattern)
                self.patterns.append((lane.method, compiled, lane, _chain(lane.view)))
        self.session_cookie = settings.SESSION_COOKIE_NAME + "="

    def route(self, method: str, path: str) -> tuple[Lane, Callable, tuple[int, ...]] | None:
        found = self.exact.get((method, path))
        if found is not None:
            return *found, ()
        for lane_method, pattern, lane, handler in self.patterns:
            match = pattern.fullmatch(path) if lane_method == method else None
            if match:
                return lane, handler, tuple(int(group) for group in match.groups())
        return None

    def plain(self, environ: dict, lane: Lane) -> bool:
        return (
            environ.get("REQUEST_METHOD") == lane.method
            and (
                lane.body is None  # a GET, or a POST whose view reads no body
                or (
                    environ.get("CONTENT_TYPE") == "application/json"
                    and 0 < _int(environ.get("CONTENT_LENGTH")) <= MAX_BODY
                )
            )
            and not environ.get("QUERY_STRING")
            and (
                PLAIN_TOKEN.fullmatch(environ.get("HTTP_AUTHORIZATION", ""))
                if lane.api_token or (lane.token_optional and "HTTP_AUTHORIZATION" in environ)
                else "HTTP_AUTHORIZATION" not in environ
            )
            and self.session_cookie not in environ.get("HTTP_COOKIE", "")
            and environ.get("HTTP_ACCEPT", "").strip() in ACCEPTED
        )

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        routed = self.route(environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", ""))
        if routed is None or not self.plain(environ, routed[0]):
            return self.app(environ, start_response)
        lane, handler, args = routed
        request = WSGIRequest(environ)
        # (A host Django refuses is refused on the lane as on the full way: the
        # chain's SecurityMiddleware or CommonMiddleware raises DisallowedHost, and
        # it becomes the same 400, with the same security log.)
        if lane.body is not None:
            raw = request.body
            # The full way reads the body again: from what was read.
            environ["wsgi.input"] = io.BytesIO(raw)
            request.lane_input = _plain_json(raw, lane.body)
            if request.lane_input is None:
                return self.app(environ, start_response)  # DRF parses and answers
        trip = None
        signed = lane.api_token or (lane.token_optional and "HTTP_AUTHORIZATION" in environ)
        key = environ["HTTP_AUTHORIZATION"][len("Token ") :] if signed else ""
        reads_token = signed and not lane.own_auth  # else the view's statement does
        if lane.own_auth:
            request.api_key = key
        if lane.token_optional and not signed:
            request.user = None
        if reads_token or lane.prefetch:
            trip = RoundTrip()
            if reads_token:
                cached = credentials_later(trip, key)
            if lane.prefetch:
                request.prefetched = lane.prefetch(trip, request, *args)
            trip.run()
        if lane.token_optional and signed:
            found = credentials_cached(cached)
            if found is None:  # not cached, or Redis down: DRF's lazy way, after the poll
                return self.app(environ, start_response)
            request.user, request.auth = found
            reads_token = False
        # A cache fill on the way (the API token's, on a miss) rides in the view's
        # own next round trip to Redis, or goes on its own as the view returns.
        with carry_writes(trip.client if trip is not None else None):
            if reads_token and lane.auth_on_miss:
                request.user, request.auth = credentials_cached(cached) or (None, None)
                request.api_key = key  # the view authenticates it if request.user is None
            elif reads_token:
                try:  # DRF's own answer for the token, from the cache read above
                    request.user, request.auth = credentials(key, cached)
                except Exception:  # a bad token, or PostgreSQL down: the full way answers
                    return self.app(environ, start_response)  # DRF's 401, or its error
            # What WSGIHandler.__call__ does around a request, in the same order.
            set_script_prefix(get_script_name(environ))
            signals.request_started.send(sender=WSGIHandler, environ=environ)
            request.lane_args = args
            response = handler(request)
        if isinstance(response, FullWay):  # an API key the view's statement refused
            return self.app(environ, start_response)
        response._handler_class = WSGIHandler  # request_finished is sent on close()
        start_response(
            f"{response.status_code} {response.reason_phrase}",
            [
                *response.items(),
                *(("Set-Cookie", c.OutputString()) for c in response.cookies.values()),
            ],
        )
        return response


MAX_BODY = 1024  # bytes: a plain body is a few small fields


def _int(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0


def _plain_json(raw: bytes, accept: Callable[[Any], dict | None]) -> dict | None:
    """The body as DRF's JSON parser reads it (UTF-8), if `accept` takes it; else None."""
    try:
        return accept(json.loads(raw.decode("utf-8")))
    except ValueError:  # not UTF-8, or not JSON (UnicodeDecodeError is a ValueError)
        return None


def plain_input(serializer: type[serializers.Serializer]) -> Callable[[Any], dict | None]:
    """A check that a JSON body is plainly what `serializer` accepts, derived from its
    own fields: an object with exactly those fields, each a JSON integer within the
    field's bounds (StrictIntegerField, the only kind a lane's input has yet). The
    check returns the body, or None for anything else, which goes the full way, to
    the serializer, which answers it (a test holds the two in agreement)."""
    bounds = {}
    for name, field in serializer().fields.items():
        if type(field) is not StrictIntegerField or not field.required:
            raise TypeError(f"{serializer.__name__}.{name}: a lane's input is required integers")
        bounds[name] = (field.min_value, field.max_value)

    def accept(data: Any) -> dict | None:
        if type(data) is not dict or data.keys() != bounds.keys():
            return None
        for name, (low, high) in bounds.items():
            value = data[name]
            if type(value) is not int:
                return None
            if (low is not None and value < low) or (high is not None and value > high):
                return None
        return data

    return accept


def exact_keys(*names: str) -> Callable[[Any], dict | None]:
    """A check that a JSON body is an object with exactly these keys, whatever their
    values: for a view that passes them to its service, which validates them the
    same either way. Anything else goes the full way."""
    keys = set(names)

    def accept(data: Any) -> dict | None:
        return data if type(data) is dict and data.keys() == keys else None

    return accept


# --- what lane views answer with ----------------------------------------------

_json = JSONRenderer()


def drf_allow(api: type[APIView]) -> str:
    """The Allow header DRF gives `api`'s answers (as_view's setup adds HEAD to a GET)."""
    instance = api()
    instance.setup(HttpRequest())
    return ", ".join(instance.allowed_methods)


def json_response(
    data: Any,
    *,
    allow: str,
    status: int = 200,
    headers: dict[str, str] | None = None,
    rendered: bytes | None = None,
) -> HttpResponse:
    """What DRF's Response with the JSON renderer gives, for a lane view. `rendered`:
    `data` as the renderer renders it, already (`render`)."""
    content = _json.render(data) if rendered is None else rendered
    response = HttpResponse(content, status=status)
    if content:
        response["Content-Type"] = "application/json"
    else:  # as DRF: no body, no Content-Type
        del response["Content-Type"]
    for name, value in (headers or {}).items():
        response[name] = value
    response["Allow"] = allow
    return response


def render(data: Any) -> bytes:
    """`data` as json_response renders it (DRF's JSON renderer)."""
    return _json.render(data)


def answer_response(
    write: Callable[[], Answer], *, allow: str, location: str | None = None
) -> HttpResponse:
    """A retry-safe write's lane answer: its Answer as config.api.answer_response
    renders it for the DRF view, or its refusal in the error envelope."""
    try:
        answer = write()
    except DomainError as exc:
        return error_response(exc, allow=allow)
    headers = answer_headers(answer, location)
    return json_response(answer.body, allow=allow, status=answer.status, headers=headers)


def error_response(exc: DomainError, *, allow: str) -> HttpResponse:
    """A domain error in the API's envelope, as config.api.exception_handler renders it."""
    return json_response(exc.body(), allow=allow, status=exc.http_status, headers=exc.headers)


def lanes() -> list[Lane]:
    """The lanes. Each view is the plain twin of one DRF view's GET, POST or DELETE."""
    from concerts.api import dates_lane, dates_reads, seats_lane, seats_reads
    from payments.api import HoldInput, PayInput, hold_lane, hold_reads, pay_lane
    from queueing.api import leave_lane, line_up_lane, poll_lane
    from wallet.api import charge_lane

    return [
        Lane(
            "/api/v1/reservations",
            hold_lane,
            api_token=True,
            prefetch=hold_reads,
            auth_on_miss=True,
            method="POST",
            body=plain_input(HoldInput),
        ),
        Lane(
            "/api/v1/payments",
            pay_lane,
            api_token=True,
            method="POST",
            body=plain_input(PayInput),
        ),
        Lane(
            "/api/v1/wallet/charges",
            charge_lane,
            api_token=True,
            method="POST",
            body=exact_keys("amount"),
        ),
        Lane("/api/v1/queue", poll_lane, token_optional=True),
        Lane("/api/v1/queue", leave_lane, api_token=True, own_auth=True, method="DELETE"),
        Lane(
            r"/api/v1/concerts/([0-9]+)/queue",
            line_up_lane,
            api_token=True,
            own_auth=True,
            method="POST",
        ),
        Lane(r"/api/v1/schedules/([0-9]+)/seats", seats_lane, api_token=True, prefetch=seats_reads),
        Lane(r"/api/v1/concerts/([0-9]+)/dates", dates_lane, api_token=True, prefetch=dates_reads),
    ]
