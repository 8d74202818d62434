"""Template context for every fan page: the cart, for the header badge."""

from __future__ import annotations

from django.http import HttpRequest
from django.utils import timezone

from concerts import selectors as concert_selectors


def cart(request: HttpRequest) -> dict:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated or request.path.startswith(("/admin", "/api")):
        return {}
    if getattr(request, "htmx", False):  # a fragment: no header, no badge to draw
        return {}
    return {"cart": concert_selectors.cart_for(user_id=user.pk, now=timezone.now())}
