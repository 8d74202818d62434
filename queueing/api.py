"""Waiting-room API: line up, poll, leave."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny, IsAdminUser, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config import fastlane
from config.api import QUEUE_TOKEN_HEADER as HEADER
from config.api import QUEUE_TOKEN_PARAMETER, request_header
from config.errors import DomainError
from queueing import selectors, services
from queueing.exceptions import QueueTokenInvalid, QueueTokenMissing, QueueTokenUnknown


class QueueTokenOutput(serializers.Serializer):
    token = serializers.CharField(source="token.key")
    concert_id = serializers.IntegerField(source="token.concert_id")
    status = serializers.ChoiceField(
        choices=["pre_queue", "waiting", "active", "expired", "left", "ended"],
        help_text="pre_queue: lined up before a scheduled sale; the place in line is drawn "
        "at random for the whole pre-queue at sale_starts_at.",
    )
    end_reason = serializers.CharField(
        allow_null=True,
        help_text="Why the turn ended (paid, operator, ttl, idle, left, lapsed); null while live.",
    )
    position = serializers.IntegerField(allow_null=True)
    estimated_wait_seconds = serializers.IntegerField(allow_null=True)
    poll_after_seconds = serializers.IntegerField()
    expires_at = serializers.DateTimeField(allow_null=True)
    sold_out = serializers.BooleanField(
        help_text="Every seat of the concert's open dates is sold (a held seat may still "
        "come back, so it is not sold). Advisory, up to a few seconds old: a fan in line "
        "may leave, or stay for returns."
    )
    sale_starts_at = serializers.DateTimeField(
        allow_null=True,
        help_text="While in the pre-queue: when the sale starts and the pre-queue is "
        "shuffled into the line (no position until then). Null otherwise.",
    )


def token_body(view: selectors.TokenView) -> dict:
    """QueueTokenOutput(view).data, built directly: a poll is the hottest path there
    is, and a serializer instance costs more than the rest of the answer. A test
    holds the two equal."""
    expires_at = view.expires_at
    return {
        "token": view.token.key,
        "concert_id": view.token.concert_id,
        "status": view.status,
        "end_reason": view.end_reason,
        "position": view.position,
        "estimated_wait_seconds": view.estimated_wait_seconds,
        "poll_after_seconds": view.poll_after_seconds,
        "expires_at": None if expires_at is None else _datetime.to_representation(expires_at),
        "sold_out": view.sold_out,
        "sale_starts_at": None
        if view.sale_starts_at is None
        else _datetime.to_representation(view.sale_starts_at),
    }


_datetime = serializers.DateTimeField()


def _answered(view: selectors.TokenView, *, now) -> dict:
    """The token's answer, its next poll recorded."""
    if not view.poll_recorded:  # the mirror's read script set it in the same round trip
        services.queue_poll_record(key=view.token.key, poll_after=view.poll_after_seconds, now=now)
    return token_body(view)


def token_response(view: selectors.TokenView, *, now, status_code: int = 200) -> Response:
    return Response(
        _answered(view, now=now), status=status_code, headers=_token_headers(view, status_code)
    )


def _token_headers(view: selectors.TokenView, status_code: int) -> dict[str, str]:
    headers = {"Retry-After": str(view.poll_after_seconds)}
    if status_code == 201:
        headers["Location"] = "/api/v1/queue"  # polled with the token in X-Queue-Token
    return headers


def _polled(key: str | None, *, now) -> selectors.TokenView:
    """One poll: the token with this secret, read (and paced) by the poll service."""
    if not key:
        raise QueueTokenMissing()
    token = services.queue_token_poll(key=key, now=now)
    if token is None:
        raise QueueTokenUnknown()
    return selectors.queue_token_view(token=token, now=now)


class QueueIssueApi(APIView):
    """Line up for a concert. 201 with a new token, 200 with the fan's existing live one."""

    error_codes = {"post": ["concert_not_found", "queue_not_open"]}
    response_headers = {"post": ["Retry-After"]}

    @extend_schema(request=None, responses={200: QueueTokenOutput, 201: QueueTokenOutput})
    def post(self, request: Request, concert_id: int) -> Response:
        # A line-up by API token usually comes the fast lane instead, to line_up_lane.
        view, code, now = _lined_up(request, concert_id)
        return token_response(view, now=now, status_code=code)


def _lined_up(request, concert_id: int) -> tuple[selectors.TokenView, int, object]:
    """The fan's line-up: the token's view, the status (201 new, 200 the live one)
    and the time it was answered at."""
    now = timezone.now()
    token, created = services.queue_token_issue(user=request.user, concert_id=concert_id, now=now)
    return _issued(token, created, now)


def _issued(token, created: bool, now) -> tuple[selectors.TokenView, int, object]:
    return selectors.queue_token_view(token=token, now=now), 201 if created else 200, now


class QueueTokenApi(APIView):
    """Poll a token (GET) or leave the line (DELETE), by its secret in X-Queue-Token.

    Polling needs only the token's secret, and authentication is lazy: an early poll
    is refused from the cache alone, before any database query (not even the
    auth-token lookup); a signed-in poller must own the token. Leaving is a write:
    it needs the owner, signed in.
    """

    def get_permissions(self):
        if self.request.method == "DELETE":
            return [IsAuthenticated()]
        return [AllowAny()]

    error_codes = {
        "get": [
            "queue_token_missing",
            "queue_token_invalid",
            "queue_token_not_found",
            "poll_too_soon",
        ],
        "delete": ["queue_token_missing", "queue_token_invalid", "queue_token_not_found"],
    }
    response_headers = {"get": ["Retry-After"]}

    def perform_authentication(self, request: Request) -> None:
        pass  # request.user is resolved only if a handler asks for it

    def _owned(self, request: Request, token):
        if token is None:
            raise QueueTokenUnknown()
        signed_in = request.COOKIES.get(settings.SESSION_COOKIE_NAME)
        if request.headers.get("Authorization") or signed_in:
            user = request.user
            if user.is_authenticated and user.pk != token.user_id:
                raise QueueTokenInvalid()
        return token

    @extend_schema(parameters=[QUEUE_TOKEN_PARAMETER], responses={200: QueueTokenOutput})
    def get(self, request: Request) -> Response:
        # A plain poll (no session; no Authorization, or an API token the cache holds)
        # usually comes the fast lane instead, to `poll_lane` (config.fastlane).
        now = timezone.now()
        view = _polled(request_header(request, HEADER), now=now)
        self._owned(request, view.token)
        return token_response(view, now=now)

    @extend_schema(parameters=[QUEUE_TOKEN_PARAMETER], responses={204: None})
    def delete(self, request: Request) -> Response:
        # A leave with an API token usually comes the fast lane instead, to
        # `leave_lane` (config.fastlane), which authenticates in its own statement.
        key = request.headers.get(HEADER)
        if not key:
            raise QueueTokenMissing()
        services.queue_leave(key=key, user_id=request.user.pk, now=timezone.now())
        return Response(status=status.HTTP_204_NO_CONTENT)


_POLL_ALLOW = fastlane.drf_allow(QueueTokenApi)


def poll_lane(request: HttpRequest) -> HttpResponse:
    """QueueTokenApi's GET for a plain poll, served by config.fastlane without DRF's
    dispatch or the full middleware: the same service calls, the same answer (status,
    headers and body; tests compare the two in every state a poll answers). A poll
    with an API token (Lane.token_optional) comes with the fan the cache holds for
    it, who must own the token, as the DRF view checks after the poll."""
    now = timezone.now()
    try:
        view = _polled(request_header(request, HEADER), now=now)
        if request.user is not None and request.user.pk != view.token.user_id:
            raise QueueTokenInvalid()
    except DomainError as exc:
        return fastlane.error_response(exc, allow=_POLL_ALLOW)
    return fastlane.json_response(
        _answered(view, now=now), allow=_POLL_ALLOW, headers=_token_headers(view, 200)
    )


# --- operators: a concert's scheduled sale (staff only) --------------------------

PRE_QUEUE_MAX_MINUTES = 24 * 60


class SaleScheduleInput(serializers.Serializer):
    sale_starts_at = serializers.DateTimeField(
        allow_null=True, help_text="The on-sale time; null: no scheduled sale (open now)."
    )
    pre_queue_minutes = serializers.IntegerField(
        min_value=0, max_value=PRE_QUEUE_MAX_MINUTES, default=0,
        help_text="How long before the on-sale time fans may join the pre-queue.",
    )  # fmt: skip


class SaleScheduleOutput(serializers.Serializer):
    concert_id = serializers.IntegerField()
    sale_starts_at = serializers.DateTimeField(allow_null=True)
    pre_queue_minutes = serializers.IntegerField()
    line_opens_at = serializers.DateTimeField(allow_null=True, source="pre_queue_opens_at")
    sale_started_at = serializers.DateTimeField(
        allow_null=True, help_text="When the start shuffled the pre-queue (then read-only)."
    )
    pre_queue_size = serializers.IntegerField()


class SaleScheduleApi(APIView):
    """A concert's scheduled sale, for operators (staff accounts): read it, or set it
    (PUT) until the sale starts. Each change is recorded in the operators' audit log."""

    permission_classes = [IsAdminUser]
    error_codes = {
        "get": ["permission_denied", "concert_not_found"],
        "put": [
            "permission_denied", "concert_not_found", "sale_already_started", "validation_error",
        ],
    }  # fmt: skip

    @extend_schema(responses=SaleScheduleOutput)
    def get(self, request: Request, concert_id: int) -> Response:
        room = services.waiting_room_get(concert_id=concert_id)
        return Response(SaleScheduleOutput(room).data)

    @extend_schema(request=SaleScheduleInput, responses=SaleScheduleOutput)
    def put(self, request: Request, concert_id: int) -> Response:
        data = SaleScheduleInput(data=request.data)
        data.is_valid(raise_exception=True)
        room = services.queue_operator_schedule_sale(
            concert_id=concert_id,
            sale_starts_at=data.validated_data["sale_starts_at"],
            pre_queue_minutes=data.validated_data["pre_queue_minutes"],
            operator=request.user,
            now=timezone.now(),
        )
        return Response(SaleScheduleOutput(room).data)


def leave_lane(request: HttpRequest) -> HttpResponse:
    """QueueTokenApi's DELETE for a fan with an API token, served by config.fastlane
    without DRF's dispatch or the full middleware: the same service rule, the same
    answer (tests compare the two). The fan is authenticated by the leave's own
    statement (Lane.own_auth); a key it refuses, or a missing or malformed queue
    token, goes the full way, where DRF authenticates first and then answers."""
    try:
        left = services.queue_leave_by_api_key(
            api_key=request.api_key, key=request.headers.get(HEADER, ""), now=timezone.now()
        )
    except DomainError as exc:
        return fastlane.error_response(exc, allow=_POLL_ALLOW)
    if not left:
        return fastlane.FullWay()
    return fastlane.json_response(None, allow=_POLL_ALLOW, status=status.HTTP_204_NO_CONTENT)


_ISSUE_ALLOW = fastlane.drf_allow(QueueIssueApi)


def line_up_lane(request: HttpRequest, concert_id: int) -> HttpResponse:
    """QueueIssueApi's POST for a fan with an API token, served by config.fastlane
    without DRF's dispatch or the full middleware: the same service calls, the same
    answer (tests compare the two). The view reads no body, so neither does the lane.
    The fan is authenticated by the line-up's own statement (Lane.own_auth): a key it
    refuses goes the full way, where DRF answers it."""
    now = timezone.now()
    try:
        issued = services.queue_token_issue_by_api_key(
            api_key=request.api_key, concert_id=concert_id, now=now
        )
        if issued is None:
            return fastlane.FullWay()
        view, code, now = _issued(*issued, now)
    except DomainError as exc:
        return fastlane.error_response(exc, allow=_ISSUE_ALLOW)
    return fastlane.json_response(
        _answered(view, now=now), allow=_ISSUE_ALLOW, status=code,
        headers=_token_headers(view, code),
    )  # fmt: skip
