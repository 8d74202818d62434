"""Operators' screens for payments: read-only; refunds go through the cancel service."""

from django.contrib import admin, messages
from django.urls import path
from django.utils import timezone

from config.errors import DomainError
from config.pages import won
from payments import dashboard, services
from payments.models import Payment
from payments.selectors import money_reconcile


@admin.register(Payment)
class PaymentAdmin(admin.ModelAdmin):
    list_display = ("id", "user", "concert", "show_date", "seat", "amount_won", "status", "paid_at")
    list_filter = ("status", "reservation__schedule__concert", "paid_at")
    search_fields = ("user__username",)
    list_select_related = ("user", "reservation__schedule__concert", "reservation__seat")
    date_hierarchy = "created_at"
    actions = ["refund", "reconcile_money"]

    def get_urls(self):
        site = self.admin_site
        return [
            path(
                "dashboard/<int:concert_id>/",
                site.admin_view(dashboard.dashboard_page),
                name="sale-dashboard",
            ),
            path(
                "dashboard/<int:concert_id>/live/",
                site.admin_view(dashboard.dashboard_live),
                name="sale-dashboard-live",
            ),
            path(
                "dashboard/<int:concert_id>/control/",
                site.admin_view(dashboard.dashboard_control),
                name="sale-dashboard-control",
            ),
            *super().get_urls(),
        ]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="Concert", ordering="reservation__schedule__concert__title")
    def concert(self, obj: Payment) -> str:
        return obj.reservation.schedule.concert.title

    @admin.display(description="Date", ordering="reservation__schedule__starts_at")
    def show_date(self, obj: Payment):
        return obj.reservation.schedule.starts_at

    @admin.display(description="Amount", ordering="amount")
    def amount_won(self, obj: Payment) -> str:
        return won(obj.amount)

    @admin.display(description="Seat")
    def seat(self, obj: Payment) -> int:
        return obj.reservation.seat.number

    @admin.action(description="Cancel and refund the selected bookings")
    def refund(self, request, queryset):
        now = timezone.now()
        for payment in queryset:
            try:
                result = services.payment_refund_by_operator(payment_id=payment.pk, now=now)
                self.message_user(
                    request, f"Payment {payment.pk}: refunded ₩{result.refunded_amount:,}."
                )
            except DomainError as exc:
                self.message_user(request, f"Payment {payment.pk}: {exc.message}", messages.ERROR)

    @admin.action(description="Run the money reconciliation (whole system)")
    def reconcile_money(self, request, queryset):
        report = money_reconcile()
        for problem in report.problems:
            self.message_user(request, f"MISMATCH {problem}", messages.ERROR)
        if report.ok:
            self.message_user(
                request,
                f"Money reconciles: charges ₩{report.charges:,} = balances ₩{report.balances:,}"
                f" + payments ₩{report.payments:,} - refunds ₩{report.refunds:,}.",
            )
