"""Operators' screens for the catalogue. Creation goes through the services."""

from django import forms
from django.contrib import admin
from django.db.models import Count

from concerts import services
from concerts.models import Concert, Schedule, Seat


class ScheduleInline(admin.TabularInline):
    model = Schedule
    fields = ("starts_at", "booking_opens_at", "booking_closes_at")
    readonly_fields = fields
    extra = 0
    show_change_link = True
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        # New dates go through the Schedule admin, whose service creates the 50 seats.
        return False


@admin.register(Concert)
class ConcertAdmin(admin.ModelAdmin):
    list_display = ("title", "artist", "venue", "schedule_count", "created_at")
    search_fields = ("title", "artist", "venue")
    list_filter = ("venue",)
    prepopulated_fields = {"slug": ("title", "artist")}
    inlines = [ScheduleInline]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_schedule_count=Count("schedules"))

    @admin.display(description="Dates", ordering="_schedule_count")
    def schedule_count(self, obj: Concert) -> int:
        return obj._schedule_count


class ScheduleAddForm(forms.ModelForm):
    seat_price = forms.IntegerField(
        min_value=1, initial=100_000, help_text="Price in won for each of the 50 seats."
    )

    class Meta:
        model = Schedule
        fields = ("concert", "starts_at", "booking_opens_at", "booking_closes_at")


class SeatInline(admin.TabularInline):
    model = Seat
    fields = ("number", "price")
    readonly_fields = ("number",)
    extra = 0
    max_num = 0
    can_delete = False
    ordering = ("number",)


@admin.register(Schedule)
class ScheduleAdmin(admin.ModelAdmin):
    list_display = ("concert", "starts_at", "booking_opens_at", "booking_closes_at")
    list_filter = ("concert", "starts_at")
    search_fields = ("concert__title", "concert__artist")
    list_select_related = ("concert",)
    date_hierarchy = "starts_at"
    fieldsets = (
        (None, {"fields": ("concert", "starts_at", "booking_opens_at", "booking_closes_at")}),
    )

    def get_inlines(self, request, obj):
        return [SeatInline] if obj is not None else []

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = ScheduleAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fieldsets(self, request, obj=None):
        if obj is None:
            fields = ("concert", "starts_at", "booking_opens_at", "booking_closes_at", "seat_price")
            return ((None, {"fields": fields}),)
        return super().get_fieldsets(request, obj)

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        created = services.schedule_create(
            concert=form.cleaned_data["concert"],
            starts_at=form.cleaned_data["starts_at"],
            booking_opens_at=form.cleaned_data["booking_opens_at"],
            booking_closes_at=form.cleaned_data["booking_closes_at"],
            seat_price=form.cleaned_data["seat_price"],
        )
        obj.pk = created.pk
        obj.created_at = created.created_at
