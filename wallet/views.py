"""The wallet page: balance, a charge form that cannot charge twice, the ledger."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme

from config.pages import new_form_key
from wallet import selectors, services
from wallet.forms import ChargeForm

# Round amounts around a seat's price; a page that knows what the fan is short of
# (the cart) links here with ?amount=, which is offered first.
QUICK_AMOUNTS = (50_000, 100_000, 200_000, 500_000)


def _next_page(request: HttpRequest) -> str | None:
    """Where to go back to after topping up (this site's own pages only)."""
    target = request.POST.get("next") or request.GET.get("next")
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts=None):
        return target
    return None


def _quick_amounts(request: HttpRequest) -> list[int]:
    suggested = request.GET.get("amount", "")
    first = [int(suggested)] if suggested.isdigit() and 0 < int(suggested) <= 10**9 else []
    return first + [a for a in QUICK_AMOUNTS if a not in first]


@login_required
def wallet_page(request: HttpRequest) -> HttpResponse:
    form = ChargeForm(request.POST or None, initial={"idempotency_key": new_form_key()})
    if request.method == "POST" and form.is_valid():
        amount = form.cleaned_data["amount"]
        # The form carries its own key: a double-click or a resubmitted page
        # replays the first charge instead of making a second one.
        answer = services.wallet_charge_submit(
            user_id=request.user.pk,
            amount=amount,
            idempotency_key=form.cleaned_data["idempotency_key"],
            now=timezone.now(),
        )
        if answer.status == 201 and answer.replayed:
            messages.info(request, "That charge was already made; you were not charged twice.")
        elif answer.status == 201:
            balance = answer.body["balance"]
            messages.success(request, f"Added ₩{amount:,}. Your balance is ₩{balance:,}.")
        else:
            form.add_error("amount", answer.body["error"]["message"])
        if answer.status == 201:
            return redirect(_next_page(request) or "wallet")
    elif request.method == "POST" and "idempotency_key" in form.errors:
        messages.error(request, "The form expired; please try again.")
    page = Paginator(selectors.ledger_for(user_id=request.user.pk), 20).get_page(
        request.GET.get("page")
    )
    return render(
        request,
        "wallet/wallet.html",
        {
            "form": form,
            "balance": selectors.wallet_balance(user_id=request.user.pk),
            "page": page,
            "quick_amounts": _quick_amounts(request),
            "next": _next_page(request),
        },
    )
