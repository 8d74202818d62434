"""Wallet API: balance, charges (idempotent), ledger. Authenticated; no queue token."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config import fastlane
from config.api import (
    IDEMPOTENCY_KEY_PARAMETER,
    answer_response,
    idempotency_key,
    paginated,
)
from config.idempotency import Answer
from config.schema import paginated_list
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

    error_codes = {
        "post": [
            "invalid_amount",
            "idempotency_key_invalid",
            "balance_limit_exceeded",
            "idempotency_key_in_use",
            "idempotency_key_reused",
        ]
    }
    response_headers = {"post": ["Idempotent-Replayed"]}

    @extend_schema(
        request=ChargeInput, parameters=[IDEMPOTENCY_KEY_PARAMETER], responses={201: ChargeOutput}
    )
    def post(self, request: Request) -> Response:
        # The amount's type and range are the service's rules; its presence is the body's.
        # A plain top-up by API token usually comes the fast lane instead, to charge_lane.
        if not isinstance(request.data, dict) or "amount" not in request.data:
            raise InvalidAmount("amount is required.")
        return answer_response(_charged(request, request.data["amount"]), location=_LEDGER_ENTRY)


_LEDGER_ENTRY = "/api/v1/wallet/ledger/{entry[entry_id]}"


def _charged(request, amount: object) -> Answer:
    return services.wallet_charge_submit(
        user_id=request.user.pk,
        amount=amount,
        idempotency_key=idempotency_key(request),
        now=timezone.now(),
    )


def charge_lane(request: HttpRequest) -> HttpResponse:
    """ChargeApi's POST for a plain top-up (an API token, a body of exactly
    {"amount": ...}), served by config.fastlane without DRF's dispatch or the full
    middleware: the same service call, the same answer (tests compare the two)."""
    return fastlane.answer_response(
        lambda: _charged(request, request.lane_input["amount"]),
        allow=_CHARGE_ALLOW,
        location=_LEDGER_ENTRY,
    )


class LedgerEntryApi(APIView):
    """One entry of the fan's own ledger; another fan's is 404."""

    error_codes = {"get": ["ledger_entry_not_found"]}

    @extend_schema(responses=EntryOutput)
    def get(self, request: Request, entry_id: int) -> Response:
        entry = selectors.ledger_entry_get_for(user_id=request.user.pk, entry_id=entry_id)
        return Response(EntryOutput(entry).data)


class LedgerApi(APIView):
    """The fan's own ledger, newest first, paginated."""

    paginated = True

    @extend_schema(responses=paginated_list(EntryOutput))
    def get(self, request: Request) -> Response:
        return paginated(request, self, selectors.ledger_for(user_id=request.user.pk), EntryOutput)


_CHARGE_ALLOW = fastlane.drf_allow(ChargeApi)
