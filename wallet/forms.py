from django import forms
from django.conf import settings

from config.pages import FORM_KEY


class ChargeForm(forms.Form):
    amount = forms.IntegerField(label="Amount (₩)")
    idempotency_key = forms.RegexField(FORM_KEY, widget=forms.HiddenInput)

    def clean_amount(self) -> int:
        amount = self.cleaned_data["amount"]
        if amount < settings.WALLET_MIN_CHARGE:
            raise forms.ValidationError(f"The smallest top-up is ₩{settings.WALLET_MIN_CHARGE:,}.")
        if amount > settings.WALLET_MAX_CHARGE:
            raise forms.ValidationError(f"The largest top-up is ₩{settings.WALLET_MAX_CHARGE:,}.")
        return amount
