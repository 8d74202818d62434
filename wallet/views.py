"""The wallet page: balance, a charge form that cannot charge twice, the ledger."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone

from config.pages import new_form_key
from wallet import selectors, services
from wallet.forms import ChargeForm

QUICK_AMOUNTS = (10_000, 50_000, 100_000)


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
            return redirect("wallet")
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
            "quick_amounts": QUICK_AMOUNTS,
        },
    )
