"""Wallet API: balance, charges (idempotent), ledger. Authenticated; no queue token."""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.api import IDEMPOTENCY_KEY_PARAMETER, answer_response, idempotency_key, paginated
from wallet import selectors, services
from wallet.exceptions import InvalidAmount
from wallet.serializers import ChargeOutput, EntryOutput, WalletOutput


class ChargeInput(serializers.Serializer):
    amount = serializers.IntegerField(help_text="Whole won, as a JSON integer.")


class WalletApi(APIView):
    @extend_schema(responses=WalletOutput)
    def get(self, request: Request) -> Response:
        balance = selectors.wallet_balance(user_id=request.user.pk)
        return Response(WalletOutput({"balance": balance, "currency": "KRW"}).data)


class ChargeApi(APIView):
    """Top up the wallet. Accepts an Idempotency-Key."""

    @extend_schema(
        request=ChargeInput, parameters=[IDEMPOTENCY_KEY_PARAMETER], responses={201: ChargeOutput}
    )
    def post(self, request: Request) -> Response:
        # The amount's type and range are the service's rules; its presence is the body's.
        if not isinstance(request.data, dict) or "amount" not in request.data:
            raise InvalidAmount("amount is required.")
        answer = services.wallet_charge_submit(
            user_id=request.user.pk,
            amount=request.data["amount"],
            idempotency_key=idempotency_key(request),
            now=timezone.now(),
        )
        return answer_response(answer)


class LedgerApi(APIView):
    """The fan's own ledger, newest first, paginated."""

    @extend_schema(responses=EntryOutput(many=True))
    def get(self, request: Request) -> Response:
        return paginated(request, self, selectors.ledger_for(user_id=request.user.pk), EntryOutput)
