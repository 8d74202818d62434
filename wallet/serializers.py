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


_datetime = serializers.DateTimeField()


def charge_body(entry) -> dict:
    """ChargeOutput({"balance": ..., "entry": entry}).data, built directly: a top-up is
    a sale-day hot path and a nested serializer costs as much as its statement. A
    test holds the two equal."""
    return {
        "balance": entry.balance_after,
        "entry": {
            "entry_id": entry.id,
            "kind": entry.kind,
            "amount": entry.amount,
            "balance_after": entry.balance_after,
            "created_at": _datetime.to_representation(entry.created_at),
        },
    }
