"""The wallet page: balance, a charge form that cannot charge twice, the ledger."""

from __future__ import annotations

import uuid

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone

from config.idempotency import fingerprint, run_once
from wallet import selectors, services
from wallet.forms import ChargeForm

QUICK_AMOUNTS = (10_000, 50_000, 100_000)


@login_required
def wallet_page(request: HttpRequest) -> HttpResponse:
    form = ChargeForm(request.POST or None, initial={"idempotency_key": uuid.uuid4().hex})
    if request.method == "POST" and form.is_valid():
        amount = form.cleaned_data["amount"]

        def execute():
            entry = services.wallet_charge(
                user_id=request.user.pk, amount=amount, now=timezone.now()
            )
            return 201, {"balance": entry.balance_after}

        # The form carries its own key: a double-click or a resubmitted page
        # replays the first charge instead of making a second one.
        status, body, replayed = run_once(
            user_id=request.user.pk,
            scope="wallet.charge",
            key=form.cleaned_data["idempotency_key"],
            print_=fingerprint("POST", "/api/v1/wallet/charges", {"amount": amount}),
            now=timezone.now(),
            execute=execute,
            render_error=lambda exc: (exc.http_status, {"message": exc.message, "code": exc.code}),
        )
        if status == 201 and replayed:
            messages.info(request, "That charge was already made; you were not charged twice.")
        elif status == 201:
            messages.success(request, f"Added ₩{amount:,}. Your balance is ₩{body['balance']:,}.")
        else:
            form.add_error("amount", body["message"])
        if status == 201:
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
