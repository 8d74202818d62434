"""Wallet API: balance, charges (idempotent), ledger. Authenticated; no queue token."""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.api import Pagination, run_idempotent
from wallet import selectors, services
from wallet.exceptions import InvalidAmount

IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    required=False,
    description="Retry safely: the same key and body replay the first answer for 24 h.",
)


def parse_amount(data: object) -> int:
    """The `amount` of a JSON body, which must be a JSON integer (not a string, float or bool)."""
    if not isinstance(data, dict) or "amount" not in data:
        raise InvalidAmount("amount is required.")
    amount = data["amount"]
    if amount is None:
        raise InvalidAmount("amount may not be null.")
    if isinstance(amount, bool):
        raise InvalidAmount("amount must be a number of won, not true or false.")
    if isinstance(amount, str):
        raise InvalidAmount("amount must be a JSON number, not a string.")
    if isinstance(amount, float):
        raise InvalidAmount("amount must be a whole number of won (no decimals).")
    if not isinstance(amount, int):
        raise InvalidAmount("amount must be a whole number of won.")
    return amount


class WalletOutput(serializers.Serializer):
    balance = serializers.IntegerField()
    currency = serializers.CharField()


class EntryOutput(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    amount = serializers.IntegerField()
    balance_after = serializers.IntegerField()
    created_at = serializers.DateTimeField()


class ChargeInput(serializers.Serializer):
    amount = serializers.IntegerField(help_text="Whole won, as a JSON integer.")


class ChargeOutput(serializers.Serializer):
    balance = serializers.IntegerField()
    entry = EntryOutput()


class WalletApi(APIView):
    @extend_schema(responses=WalletOutput)
    def get(self, request: Request) -> Response:
        balance = selectors.wallet_balance(user_id=request.user.pk)
        return Response(WalletOutput({"balance": balance, "currency": "KRW"}).data)


class ChargeApi(APIView):
    """Top up the wallet. Accepts an Idempotency-Key."""

    @extend_schema(request=ChargeInput, parameters=[IDEMPOTENCY_KEY], responses={201: ChargeOutput})
    def post(self, request: Request) -> Response:
        def execute():
            entry = services.wallet_charge(
                user_id=request.user.pk, amount=parse_amount(request.data), now=timezone.now()
            )
            body = ChargeOutput({"balance": entry.balance_after, "entry": entry}).data
            return 201, body

        return run_idempotent(request, scope="wallet.charge", execute=execute)


class LedgerApi(APIView):
    """The fan's own ledger, newest first, paginated."""

    @extend_schema(responses=EntryOutput(many=True))
    def get(self, request: Request) -> Response:
        paginator = Pagination()
        page = paginator.paginate_queryset(
            selectors.ledger_for(user_id=request.user.pk), request, view=self
        )
        return paginator.get_paginated_response(EntryOutput(page, many=True).data)
