from django.urls import path

from wallet import api, views

urlpatterns = [path("wallet/", views.wallet_page, name="wallet")]

api_urlpatterns = [
    path("wallet", api.WalletApi.as_view(), name="api-wallet"),
    path("wallet/charges", api.ChargeApi.as_view(), name="api-wallet-charges"),
    path("wallet/ledger", api.LedgerApi.as_view(), name="api-wallet-ledger"),
    path("wallet/ledger/<int:entry_id>", api.LedgerEntryApi.as_view(), name="api-wallet-entry"),
]
