"""Accounts: sign-up pages and API registration and tokens.

Accounts are plain django.contrib.auth users; no app owns them, so this glue
lives in config/ beside the other cross-cutting pieces.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import get_user_model, login, password_validation
from django.contrib.auth.forms import UserCreationForm
from django.contrib.auth.models import AbstractBaseUser
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

from config.errors import DomainError

User = get_user_model()


class UsernameTaken(DomainError):
    code = "username_taken"
    http_status = 400
    message = "That username is already taken."


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
    username = serializers.RegexField(
        r"^[\w.@+-]+\Z",
        max_length=150,
        error_messages={"invalid": "Use letters, digits and @/./+/-/_ only."},
    )
    password = serializers.CharField(write_only=True, trim_whitespace=False)

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
    id = serializers.IntegerField()
    username = serializers.CharField()
    token = serializers.CharField()


class RegisterApi(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list = []
    throttle_classes = [AnonRateThrottle]

    @extend_schema(request=RegisterInput, responses={201: RegisterOutput})
    def post(self, request: Request) -> Response:
        data = RegisterInput(data=request.data)
        data.is_valid(raise_exception=True)
        user, token = user_register(**data.validated_data)
        body = RegisterOutput({"id": user.pk, "username": user.get_username(), "token": token})
        return Response(body.data, status=status.HTTP_201_CREATED)


class TokenOutput(serializers.Serializer):
    token = serializers.CharField()


class TokenApi(ObtainAuthToken):
    """Exchange a username and password for the account's API token."""

    authentication_classes: list = []
    throttle_classes = [AnonRateThrottle]

    @extend_schema(request=ObtainAuthToken.serializer_class, responses={200: TokenOutput})
    def post(self, request, *args, **kwargs):
        return super().post(request, *args, **kwargs)


class MeOutput(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()


class MeApi(APIView):
    """Who am I? Requires authentication."""

    @extend_schema(responses=MeOutput)
    def get(self, request: Request) -> Response:
        return Response(MeOutput({"id": request.user.pk, "username": request.user.username}).data)


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
