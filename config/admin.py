"""The audit log of operator actions, read-only: rows are written by services only."""

from django.contrib import admin

from config.models import OperatorAction


@admin.register(OperatorAction)
class OperatorActionAdmin(admin.ModelAdmin):
    list_display = ("created_at", "operator_name", "action", "concert_id", "details")
    list_filter = ("action",)
    search_fields = ("operator_name", "action")
    date_hierarchy = "created_at"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
