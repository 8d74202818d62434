"""Operators' screens for money: read-only. No admin path changes a balance."""

from django.contrib import admin, messages

from config.pages import won
from wallet.models import LedgerEntry, Wallet
from wallet.selectors import wallet_mismatches


class LedgerInline(admin.TabularInline):
    model = LedgerEntry
    fields = ("created_at", "kind", "amount", "balance_after", "payment_id", "reservation_id")
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ("-id",)
    max_num = 0
    show_change_link = False


@admin.register(Wallet)
class WalletAdmin(admin.ModelAdmin):
    list_display = ("user", "balance_won", "updated_at")
    search_fields = ("user__username",)
    list_select_related = ("user",)
    readonly_fields = ("user", "balance_won", "updated_at")
    exclude = ("balance",)
    inlines = [LedgerInline]
    actions = ["reconcile"]

    @admin.display(description="Balance", ordering="balance")
    def balance_won(self, obj: Wallet) -> str:
        return won(obj.balance)

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.action(description="Reconcile the selected wallets with their ledgers")
    def reconcile(self, request, queryset):
        mismatches = wallet_mismatches(user_ids=list(queryset.values_list("pk", flat=True)))
        for m in mismatches:
            self.message_user(
                request,
                f"MISMATCH {m.username}: balance ₩{m.balance:,}, ledger ₩{m.ledger_sum:,}",
                messages.ERROR,
            )
        if not mismatches:
            self.message_user(request, f"All {queryset.count()} wallet(s) reconcile.")


@admin.register(LedgerEntry)
class LedgerEntryAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "wallet",
        "kind",
        "amount_won",
        "balance_after_won",
        "created_at",
        "payment_id",
    )
    list_filter = ("kind", "created_at")
    search_fields = ("wallet__user__username",)
    list_select_related = ("wallet__user",)
    date_hierarchy = "created_at"

    @admin.display(description="Amount", ordering="amount")
    def amount_won(self, obj: LedgerEntry) -> str:
        return won(obj.signed_amount) if obj.signed_amount >= 0 else f"−{won(obj.amount)}"

    @admin.display(description="Balance after", ordering="balance_after")
    def balance_after_won(self, obj: LedgerEntry) -> str:
        return won(obj.balance_after)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
