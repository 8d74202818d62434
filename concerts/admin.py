"""Operators' screens for the catalogue. Creation goes through the services."""

from django import forms
from django.contrib import admin
from django.db.models import Count, OuterRef, Subquery
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from concerts import services
from concerts.models import Concert, Reservation, Schedule, Seat, WaitlistEntry
from config.pages import won


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
    list_display = (
        "title",
        "artist",
        "venue",
        "schedule_count",
        "hold_ttl_seconds",
        "max_seats_per_fan",
        "created_at",
        "live_sale",
    )
    search_fields = ("title", "artist", "venue")
    list_filter = ("venue",)
    prepopulated_fields = {"slug": ("title", "artist")}
    inlines = [ScheduleInline]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_schedule_count=Count("schedules"))

    @admin.display(description="Dates", ordering="_schedule_count")
    def schedule_count(self, obj: Concert) -> int:
        return obj._schedule_count

    @admin.display(description="Live sale")
    def live_sale(self, obj: Concert) -> str:
        # The dashboard lives with payments (it shows revenue); linked by its URL name.
        return format_html(
            '<a href="{}">Dashboard</a>', reverse("admin:sale-dashboard", args=[obj.pk])
        )

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        # A new concert comes with its waiting room, through the service.
        created = services.concert_create(
            title=obj.title,
            artist=obj.artist,
            venue=obj.venue,
            description=obj.description,
            slug=obj.slug,
            hold_ttl_seconds=obj.hold_ttl_seconds,
            max_seats_per_fan=obj.max_seats_per_fan,
        )
        obj.pk, obj.created_at = created.pk, created.created_at


class ScheduleAddForm(forms.ModelForm):
    seat_price = forms.IntegerField(
        min_value=1, initial=100_000, help_text="Price in won for each of the 50 seats."
    )

    class Meta:
        model = Schedule
        fields = ("concert", "starts_at", "booking_opens_at", "booking_closes_at")


class SeatInline(admin.TabularInline):
    """The date's 50 seats with their live status and holder (one query for all)."""

    model = Seat
    fields = ("number", "price", "live_status", "holder")
    readonly_fields = ("number", "live_status", "holder")
    extra = 0
    max_num = 0
    can_delete = False
    ordering = ("number",)

    def get_queryset(self, request):
        live = Reservation.objects.filter(
            Reservation.live_q(now=timezone.now()), seat=OuterRef("pk")
        )
        return (
            super()
            .get_queryset(request)
            .annotate(
                _status=Subquery(live.values("status")[:1]),
                _holder=Subquery(live.values("user__username")[:1]),
            )
        )

    @admin.display(description="Status")
    def live_status(self, obj: Seat) -> str:
        return obj._status or "available"

    @admin.display(description="Holder")
    def holder(self, obj: Seat) -> str:
        return obj._holder or "—"


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


@admin.register(Reservation)
class ReservationAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "user",
        "concert",
        "schedule",
        "seat_number",
        "status",
        "end_reason",
        "price_won",
        "created_at",
        "expires_at",
    )
    list_filter = ("status", "end_reason", "schedule__concert", "schedule")
    search_fields = ("user__username",)
    list_select_related = ("user", "schedule__concert", "seat")
    date_hierarchy = "created_at"
    actions = ["release_holds"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # reservations change only through services (actions)

    @admin.display(description="Concert", ordering="schedule__concert__title")
    def concert(self, obj: Reservation) -> str:
        return obj.schedule.concert.title

    @admin.display(description="Price", ordering="price")
    def price_won(self, obj: Reservation) -> str:
        return won(obj.price)

    @admin.display(description="Seat", ordering="seat__number")
    def seat_number(self, obj: Reservation) -> int:
        return obj.seat.number

    @admin.action(description="Release the selected holds (frees the seats)")
    def release_holds(self, request, queryset):
        now = timezone.now()
        released = sum(
            services.reservation_release_by_operator(reservation_id=pk, now=now)
            for pk in queryset.filter(status=Reservation.Status.HELD).values_list("pk", flat=True)
        )
        self.message_user(request, f"Released {released} hold(s).")


@admin.register(WaitlistEntry)
class WaitlistEntryAdmin(admin.ModelAdmin):
    """Who waits for which sold-out date, and the offers made. Read-only: entries
    change only through the waitlist services (join, leave, a freed seat's offer)."""

    list_display = ("id", "schedule", "user", "status", "created_at", "offered_at", "reservation")
    list_filter = ("status", "schedule__concert")
    search_fields = ("user__username", "schedule__concert__title")
    list_select_related = ("schedule__concert", "user", "reservation")
    ordering = ("schedule", "id")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
