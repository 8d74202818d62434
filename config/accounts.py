"""Accounts: sign-up pages and API registration and tokens.

Accounts are plain django.contrib.auth users; no app owns them, so this glue
lives in config/ beside the other cross-cutting pieces.
"""

from __future__ import annotations

import hashlib
import logging

from django import forms
from django.contrib import messages
from django.contrib.auth import get_user_model, login, password_validation
from django.contrib.auth.forms import AuthenticationForm, UserCreationForm
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.authtoken.models import Token
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import AnonRateThrottle
from rest_framework.views import APIView

from config.api import StrictCharField, StrictRegexField
from config.errors import DomainError

User = get_user_model()
logger = logging.getLogger(__name__)


class UsernameTaken(DomainError):
    code = "username_taken"
    http_status = 400
    message = "That username is already taken."


class InvalidCredentials(DomainError):
    code = "invalid_credentials"
    http_status = 401
    message = "That username and password do not match an account."

    def __init__(self) -> None:
        super().__init__(headers={"WWW-Authenticate": "Token"})


class LoginThrottled(DomainError):
    code = "login_throttled"
    http_status = 429
    message = "Too many failed logins; wait before trying again."
    replayable = False

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            f"Too many failed logins; try again in {retry_after} s.",
            details={"retry_after_seconds": retry_after},
            headers={"Retry-After": str(retry_after)},
        )


# --- failed logins -------------------------------------------------------------
#
# Politeness, not security (passwords are hashed and validated): failed logins are
# counted per client IP (THROTTLE_AUTH) and per username (THROTTLE_AUTH_PER_USERNAME)
# in fixed windows in the shared cache. Only failures count, so a fan who logs in
# correctly is never slowed down. If the cache is down the check is skipped.


def _login_limits() -> list[tuple[str, str]]:
    from django.conf import settings

    rates = settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]
    return [("ip", rates["auth"]), ("username", rates["auth_username"])]


def _login_keys(*, ip: str, username: str) -> list[tuple[str, int, int]]:
    """(cache key, limit, window seconds) for each counter this attempt touches."""
    from rest_framework.throttling import SimpleRateThrottle

    parse = SimpleRateThrottle.parse_rate
    keys = []
    for scope, rate in _login_limits():
        limit, window = parse(None, rate)
        subject = ip if scope == "ip" else username.casefold()
        digest = hashlib.sha256(subject.encode()).hexdigest()[:32]  # any input, a safe key
        keys.append((f"login-failures:{scope}:{digest}", limit, window))
    return keys


def login_failures_check(*, ip: str, username: str) -> None:
    """Refuse (429 login_throttled) while this IP or username is over its limit."""
    try:
        for key, limit, window in _login_keys(ip=ip, username=username):
            if (cache.get(key) or 0) >= limit:
                raise LoginThrottled(retry_after=window)
    except LoginThrottled:
        raise
    except Exception:  # the cache is down: let the login through
        logger.warning("login throttle skipped: the cache did not answer", exc_info=True)


def login_failure_record(*, ip: str, username: str) -> None:
    try:
        for key, _, window in _login_keys(ip=ip, username=username):
            cache.add(key, 0, window)
            cache.incr(key)
    except Exception:
        logger.warning("login failure not counted: the cache did not answer", exc_info=True)


def client_ip(request) -> str:
    """The client's address as DRF's throttles see it (honours NUM_PROXIES)."""
    return AnonRateThrottle().get_ident(request)


def user_register(*, username: str, password: str) -> tuple[AbstractBaseUser, str]:
    """Create a fan account and its API token. Password validators apply."""
    candidate = User(username=username)
    password_validation.validate_password(password, user=candidate)
    try:
        with transaction.atomic():
            user = User.objects.create_user(username=username, password=password)
            token = Token.objects.create(user=user)
    except IntegrityError:
        raise UsernameTaken(details={"username": ["That username is already taken."]}) from None
    return user, token.key


class RegisterInput(serializers.Serializer):
    username = StrictRegexField(
        r"^[\w.@+-]+\Z",
        max_length=150,
        error_messages={"invalid": "Use letters, digits and @/./+/-/_ only."},
    )
    password = StrictCharField(write_only=True, trim_whitespace=False, max_length=128)

    def validate_username(self, value: str) -> str:
        if User.objects.filter(username__iexact=value).exists():
            raise serializers.ValidationError("That username is already taken.")
        return value

    def validate(self, attrs):
        try:
            password_validation.validate_password(
                attrs["password"], user=User(username=attrs["username"])
            )
        except DjangoValidationError as exc:
            raise serializers.ValidationError({"password": list(exc.messages)}) from None
        return attrs


class RegisterOutput(serializers.Serializer):
    user_id = serializers.IntegerField()
    username = serializers.CharField()
    token = serializers.CharField()


class RegisterApi(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list = []
    throttle_classes = [AnonRateThrottle]
    error_codes = {"post": ["username_taken"]}

    @extend_schema(request=RegisterInput, responses={201: RegisterOutput})
    def post(self, request: Request) -> Response:
        data = RegisterInput(data=request.data)
        data.is_valid(raise_exception=True)
        user, token = user_register(**data.validated_data)
        body = RegisterOutput({"user_id": user.pk, "username": user.get_username(), "token": token})
        return Response(
            body.data, status=status.HTTP_201_CREATED, headers={"Location": "/api/v1/auth/me"}
        )


class TokenOutput(serializers.Serializer):
    token = serializers.CharField()


class TokenApi(ObtainAuthToken):
    """Exchange a username and password for the account's API token. Wrong
    credentials are 401 invalid_credentials; too many failures from one address or
    for one username are 429 login_throttled, with Retry-After."""

    authentication_classes: list = []
    throttle_classes = [AnonRateThrottle]
    error_codes = {"post": ["invalid_credentials", "login_throttled"]}

    @extend_schema(request=ObtainAuthToken.serializer_class, responses={200: TokenOutput})
    def post(self, request, *args, **kwargs):
        ip = client_ip(request)
        username = request.data.get("username") if isinstance(request.data, dict) else None
        username = username if isinstance(username, str) else ""
        login_failures_check(ip=ip, username=username)
        serializer = self.get_serializer(data=request.data)
        if not serializer.is_valid():
            if set(serializer.errors) == {"non_field_errors"}:  # both given, no match
                login_failure_record(ip=ip, username=username)
                raise InvalidCredentials()
            raise serializers.ValidationError(serializer.errors)
        token, _ = Token.objects.get_or_create(user=serializer.validated_data["user"])
        return Response(TokenOutput({"token": token.key}).data)


class ThrottledAuthenticationForm(AuthenticationForm):
    """The login page's form, under the same failed-login limits as the API."""

    def clean(self):
        ip = client_ip(self.request)
        username = self.data.get("username", "")
        try:
            login_failures_check(ip=ip, username=username)
        except LoginThrottled as exc:
            raise forms.ValidationError(exc.message, code="throttled") from None
        try:
            return super().clean()
        except forms.ValidationError as exc:
            if exc.code == "invalid_login":
                login_failure_record(ip=ip, username=username)
            raise


class MeOutput(serializers.Serializer):
    user_id = serializers.IntegerField()
    username = serializers.CharField()


class MeApi(APIView):
    """Who am I? Requires authentication."""

    @extend_schema(responses=MeOutput)
    def get(self, request: Request) -> Response:
        me = {"user_id": request.user.pk, "username": request.user.get_username()}
        return Response(MeOutput(me).data)


def signup(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("home")
    form = UserCreationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user, _ = user_register(
            username=form.cleaned_data["username"], password=form.cleaned_data["password1"]
        )
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        messages.success(request, f"Welcome, {user.get_username()}! Your account is ready.")
        return redirect("home")
    return render(request, "registration/signup.html", {"form": form})
