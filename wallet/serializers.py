"""How the wallet reads over the API: shared by the views and by
wallet_charge_submit, whose answer is stored for idempotent replays."""

from __future__ import annotations

from rest_framework import serializers


class WalletOutput(serializers.Serializer):
    balance = serializers.IntegerField()
    currency = serializers.CharField()


class EntryOutput(serializers.Serializer):
    entry_id = serializers.IntegerField(source="id")
    kind = serializers.CharField()
    amount = serializers.IntegerField()
    balance_after = serializers.IntegerField()
    created_at = serializers.DateTimeField()


class ChargeOutput(serializers.Serializer):
    balance = serializers.IntegerField()
    entry = EntryOutput()
