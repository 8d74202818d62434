"""Operators' screens for the waiting room. Every change goes through a service."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ActionForm
from django.utils import timezone

from config.errors import DomainError
from queueing import selectors, services
from queueing.models import QueueToken, WaitingRoom


class AdmitActionForm(ActionForm):
    count = forms.IntegerField(
        required=False, min_value=1, max_value=10_000, label="N", help_text="for 'Admit next N'"
    )


@admin.register(WaitingRoom)
class WaitingRoomAdmin(admin.ModelAdmin):
    """The queue panel: one row per concert."""

    list_display = (
        "concert",
        "waiting",
        "active",
        "admitted_last_minute",
        "capacity",
        "max_active",
        "admission_paused",
        "sale_starts_at",
    )
    list_editable = ("max_active", "admission_paused")
    list_select_related = ("concert",)
    search_fields = ("concert__title", "concert__artist")
    list_filter = ("admission_paused",)
    fields = (
        "concert",
        "max_active",
        "admission_paused",
        "sale_starts_at",
        "pre_queue_minutes",
        "sale_started_at",
        "pre_queue_size",
        "shuffle_seed",
    )
    action_form = AdmitActionForm
    actions = ["admit_next_n", "pause_admission", "resume_admission"]

    def get_queryset(self, request):
        return selectors.waiting_room_list_with_stats(now=timezone.now())

    @admin.display(description="Waiting", ordering="waiting")
    def waiting(self, obj: WaitingRoom) -> int:
        return obj.waiting

    @admin.display(description="Active", ordering="active")
    def active(self, obj: WaitingRoom) -> int:
        return obj.active

    @admin.display(description="Capacity now")
    def capacity(self, obj: WaitingRoom) -> str:
        return f"{obj.capacity}" if obj.max_active is not None else f"{obj.capacity} (default)"

    @admin.display(description="Admitted in the last minute", ordering="admitted_last_minute")
    def admitted_last_minute(self, obj: WaitingRoom) -> int:
        return obj.admitted_last_minute

    def get_readonly_fields(self, request, obj=None):
        audit = ("sale_started_at", "pre_queue_size", "shuffle_seed")
        if obj is None:
            return audit
        if obj.sale_started_at is not None:  # the sale has started: its schedule is history
            return ("concert", "sale_starts_at", "pre_queue_minutes", *audit)
        return ("concert", *audit)

    def save_model(self, request, obj, form, change):
        try:
            services.waiting_room_update(
                concert_id=obj.concert_id,
                max_active=obj.max_active,
                admission_paused=obj.admission_paused,
                sale_starts_at=obj.sale_starts_at,
                pre_queue_minutes=obj.pre_queue_minutes,
                now=timezone.now(),
            )
        except DomainError as exc:
            self.message_user(request, exc.message, messages.ERROR)

    @admin.action(description="Admit next N now (in line order, beyond capacity)")
    def admit_next_n(self, request, queryset):
        count = request.POST.get("count")
        if not count or not count.isdigit() or int(count) < 1:
            self.message_user(request, "Enter N, the number of fans to admit.", messages.ERROR)
            return
        now = timezone.now()
        for room in queryset:
            try:
                admitted = services.queue_operator_admit(
                    concert_id=room.concert_id, count=int(count), operator=request.user, now=now
                )
            except DomainError as exc:
                self.message_user(request, exc.message, messages.ERROR)
                return
            self.message_user(request, f"{room.concert}: admitted {len(admitted)} fan(s).")

    def _set_paused(self, request, queryset, *, paused: bool) -> None:
        now = timezone.now()
        for room in queryset:
            services.queue_operator_pause(
                concert_id=room.concert_id, paused=paused, operator=request.user, now=now
            )
        verb = "Paused" if paused else "Resumed"
        self.message_user(request, f"{verb} {queryset.count()} waiting room(s).")

    @admin.action(description="Pause admission")
    def pause_admission(self, request, queryset):
        self._set_paused(request, queryset, paused=True)

    @admin.action(description="Resume admission")
    def resume_admission(self, request, queryset):
        self._set_paused(request, queryset, paused=False)


@admin.register(QueueToken)
class QueueTokenAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "concert",
        "user",
        "status",
        "created_at",
        "admitted_at",
        "active_until",
        "ended_at",
        "end_reason",
    )
    list_filter = ("status", "concert")
    search_fields = ("user__username",)
    list_select_related = ("concert", "user")
    date_hierarchy = "created_at"
    ordering = ("-id",)
    actions = ["end_tokens"]
    readonly_fields = [f.name for f in QueueToken._meta.fields if f.name != "key"]
    exclude = ("key",)  # the token is a secret: operators never need to see it

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.action(description="End the selected tokens (frees their slots)")
    def end_tokens(self, request, queryset):
        ended = services.queue_operator_end_tokens(
            ids=list(queryset.values_list("pk", flat=True)),
            operator=request.user,
            now=timezone.now(),
        )
        self.message_user(request, f"Ended {ended} token(s).")
