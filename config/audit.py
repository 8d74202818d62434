"""The operators' audit log: services record each operator action here, inside the
transaction that carries it out, so the log holds exactly what happened."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet

from config.models import OperatorAction


def operator_action_record(
    *,
    operator: AbstractBaseUser,
    action: str,
    now: datetime,
    concert_id: int | None = None,
    details: dict[str, Any] | None = None,
) -> OperatorAction:
    return OperatorAction.objects.create(
        operator=operator,
        operator_name=operator.get_username(),
        action=action,
        concert_id=concert_id,
        details=details or {},
        created_at=now,
    )


def operator_actions_for(*, concert_id: int, limit: int = 20) -> QuerySet[OperatorAction]:
    return OperatorAction.objects.filter(concert_id=concert_id)[:limit]
