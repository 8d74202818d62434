import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone
from rest_framework.test import APIClient

from concerts.models import Reservation
from payments.models import Payment
from queueing import services as queue_services
from queueing.exceptions import QueueTokenExpired
from queueing.models import QueueToken, WaitingRoom
from tests.conftest import admitted_client, hold_seat, token_client
from tests.factories import UserFactory, make_schedule
from tests.payments.conftest import fund, hold
from wallet import selectors as wallet_selectors
from wallet import services as wallet_services
from wallet.models import LedgerEntry, Wallet

pytestmark = pytest.mark.django_db
PAYMENT_KEYS = {
    "payment_id",
    "reservation_id",
    "amount",
    "status",
    "failure_reason",
    "paid_at",
    "refunded_at",
    "ticket",
}


def pay(client, reservation_id, key=None):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    return client.post("/api/v1/payments", {"reservation_id": reservation_id}, **headers)


def test_paying_debits_confirms_the_seat_and_returns_the_ticket(paying_fan, schedule):
    fan, client, reservation = paying_fan
    response = pay(client, reservation.id)
    assert response.status_code == 201
    body = response.json()
    assert set(body) == PAYMENT_KEYS
    assert body["status"] == "paid" and body["amount"] == 100_000
    assert body["ticket"] == {
        "concert_id": schedule.concert_id,
        "schedule_id": schedule.id,
        "starts_at": body["ticket"]["starts_at"],
        "seat_number": 5,
    }
    reservation.refresh_from_db()
    assert reservation.status == "confirmed"
    debit = LedgerEntry.objects.get(kind="payment")
    assert (debit.amount, debit.payment_id, debit.reservation_id) == (
        100_000,
        body["payment_id"],
        reservation.id,
    )
    assert wallet_selectors.wallet_balance(user_id=fan.pk) == 50_000


def test_token_hand_over_the_next_waiting_fan_is_admitted_at_once(
    paying_fan, concert, django_capture_on_commit_callbacks
):
    fan, client, reservation = paying_fan
    WaitingRoom.objects.filter(pk=concert.id).update(max_active=1)
    waiting_fan = UserFactory()
    waiting, _ = queue_services.queue_token_issue(
        user=waiting_fan, concert_id=concert.id, now=timezone.now()
    )
    assert waiting.status == "waiting"
    with django_capture_on_commit_callbacks(execute=True):
        assert pay(client, reservation.id).status_code == 201
    token = QueueToken.objects.get(user=fan)
    assert (token.status, token.end_reason) == ("ended", "paid")
    with pytest.raises(QueueTokenExpired):
        queue_services.queue_gate_pass(
            key=token.key, user=fan, concert_id=concert.id, now=timezone.now()
        )
    waiting.refresh_from_db()
    assert waiting.status == "active"  # no beat tick needed


def test_insufficient_balance_is_402_writes_no_debit_and_frees_the_seat(fan, concert, schedule):
    client = admitted_client(fan, concert)
    fund(fan, 50_000)
    reservation = hold(fan, schedule)
    response = pay(client, reservation.id)
    assert response.status_code == 402
    assert response.json()["error"]["code"] == "insufficient_balance"
    assert not LedgerEntry.objects.filter(kind="payment").exists()
    assert wallet_selectors.wallet_balance(user_id=fan.pk) == 50_000
    failed = Payment.objects.get()
    assert (failed.status, failed.failure_reason) == ("failed", "insufficient_balance")
    # The very next request by another fan gets the seat.
    other = admitted_client(UserFactory(), concert)
    taken = other.post("/api/v1/reservations", {"schedule_id": schedule.id, "seat_number": 5})
    assert taken.status_code == 201


def test_an_expired_hold_cannot_be_paid(paying_fan, schedule):
    fan, client, reservation = paying_fan
    Reservation.objects.filter(pk=reservation.pk).update(expires_at=timezone.now())
    response = pay(client, reservation.id)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "hold_expired"
    assert not LedgerEntry.objects.filter(kind="payment").exists()
    reservation.refresh_from_db()
    assert reservation.status == "expired"
    assert Payment.objects.get().failure_reason == "hold_expired"


def test_a_second_payment_without_a_key_is_already_paid(paying_fan):
    fan, client, reservation = paying_fan
    assert pay(client, reservation.id).status_code == 201
    again = pay(client, reservation.id)  # the fan's token has ended by now
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "already_paid"
    assert LedgerEntry.objects.filter(kind="payment").count() == 1


def test_a_cancelled_reservation_is_not_payable(paying_fan):
    fan, client, reservation = paying_fan
    token_client(fan).delete(f"/api/v1/reservations/{reservation.id}")
    response = pay(client, reservation.id)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "reservation_not_payable"


def test_another_fans_or_an_unknown_reservation_is_404(paying_fan, concert):
    fan, client, reservation = paying_fan
    other = admitted_client(UserFactory(), concert)
    assert pay(other, reservation.id).status_code == 404
    assert pay(client, 999_999).status_code == 404
    assert Reservation.objects.get(pk=reservation.pk).status == "held"


def test_paying_needs_an_active_queue_token(paying_fan):
    fan, client, reservation = paying_fan
    response = pay(token_client(fan), reservation.id)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "queue_token_missing"


def test_the_same_key_replays_the_first_201_even_after_the_turn_ended(paying_fan):
    fan, client, reservation = paying_fan
    first = pay(client, reservation.id, key="pay-1")
    again = pay(client, reservation.id, key="pay-1")
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert LedgerEntry.objects.filter(kind="payment").count() == 1


def test_the_same_key_for_another_reservation_is_422(paying_fan, schedule):
    fan, client, reservation = paying_fan
    pay(client, reservation.id, key="pay-1")
    response = pay(client, reservation.id + 1000, key="pay-1")
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "idempotency_key_reused"


def test_cancelling_a_paid_booking_refunds_once_and_frees_the_seat(paying_fan, concert, schedule):
    fan, client, reservation = paying_fan
    payment_id = pay(client, reservation.id).json()["payment_id"]
    plain = token_client(fan)  # the turn has ended; cancelling needs no queue token
    first = plain.delete(f"/api/v1/reservations/{reservation.id}")
    assert first.status_code == 200
    assert first.json()["status"] == "cancelled" and first.json()["refunded_amount"] == 100_000
    second = plain.delete(f"/api/v1/reservations/{reservation.id}")
    assert second.status_code == 200 and second.json()["refunded_amount"] == 100_000
    assert LedgerEntry.objects.filter(kind="refund").count() == 1
    assert LedgerEntry.objects.get(kind="refund").payment_id == payment_id
    assert wallet_selectors.wallet_balance(user_id=fan.pk) == 150_000
    assert Payment.objects.get(pk=payment_id).status == "refunded"
    other = admitted_client(UserFactory(), concert)
    seats = other.get(f"/api/v1/schedules/{schedule.id}/seats").json()["seats"]
    assert 5 in [s["number"] for s in seats]


def test_cancelling_a_hold_refunds_nothing(paying_fan):
    fan, client, reservation = paying_fan
    response = token_client(fan).delete(f"/api/v1/reservations/{reservation.id}")
    assert response.json()["refunded_amount"] == 0
    assert not LedgerEntry.objects.filter(kind="refund").exists()


def test_no_cancellation_after_booking_closes(paying_fan, schedule):
    fan, client, reservation = paying_fan
    pay(client, reservation.id)
    from concerts.models import Schedule

    Schedule.objects.filter(pk=schedule.pk).update(
        booking_opens_at=timezone.now() - timedelta(days=3),
        booking_closes_at=timezone.now() - timedelta(seconds=1),
    )
    response = token_client(fan).delete(f"/api/v1/reservations/{reservation.id}")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "cancellation_closed"
    assert not LedgerEntry.objects.filter(kind="refund").exists()


def test_tickets_list_the_fans_confirmed_bookings(paying_fan, concert):
    fan, client, reservation = paying_fan
    pay(client, reservation.id)
    body = token_client(fan).get("/api/v1/tickets").json()
    assert body["count"] == 1
    ticket = body["results"][0]
    assert ticket["concert"] == concert.title and ticket["venue"] == concert.venue
    assert ticket["seat_number"] == 5 and ticket["amount"] == 100_000


@pytest.mark.parametrize("who", ["owner", "other_fan", "anonymous"])
def test_payment_and_ticket_permission_matrix(paying_fan, concert, who):
    fan, client, reservation = paying_fan
    payment_id = pay(client, reservation.id).json()["payment_id"]
    callers = {
        "owner": token_client(fan),
        "other_fan": admitted_client(UserFactory(), concert),
        "anonymous": APIClient(),
    }
    caller = callers[who]
    detail = caller.get(f"/api/v1/payments/{payment_id}")
    tickets = caller.get("/api/v1/tickets")
    paying = pay(caller, reservation.id)
    cancel = caller.delete(f"/api/v1/reservations/{reservation.id}")
    if who == "anonymous":
        assert {
            detail.status_code,
            tickets.status_code,
            paying.status_code,
            cancel.status_code,
        } == {401}
    elif who == "other_fan":
        assert detail.status_code == 404
        assert tickets.json()["count"] == 0
        assert paying.status_code == 404
        assert cancel.status_code == 404
        assert Reservation.objects.get(pk=reservation.pk).status == "confirmed"
    else:
        assert detail.status_code == 200 and detail.json()["payment_id"] == payment_id
        assert tickets.json()["count"] == 1
        assert paying.status_code == 409  # already paid
        assert cancel.status_code == 200


def test_money_reconcile_passes_then_names_a_broken_row(paying_fan, concert, schedule):
    fan, client, reservation = paying_fan
    pay(client, reservation.id)
    out = io.StringIO()
    call_command("money_reconcile", stdout=out)
    assert "OK: the money reconciles" in out.getvalue()
    # A confirmed reservation with no payment behind it.
    other = UserFactory()
    admitted_client(other, concert)
    broken = hold(other, schedule, 9)
    Reservation.objects.filter(pk=broken.pk).update(status="confirmed", expires_at=None)
    Wallet.objects.filter(pk=fan.pk).update(balance=1)
    out = io.StringIO()
    with pytest.raises(SystemExit) as exit_info:
        call_command("money_reconcile", stdout=out)
    assert exit_info.value.code == 1
    text = out.getvalue()
    assert f"reservation {broken.pk} is confirmed with 0 paid payment(s)" in text
    assert f"wallet of {fan.username}" in text
    assert "charges" in text


def test_another_date_and_fan_are_untouched_by_a_payment(paying_fan, concert):
    fan, client, reservation = paying_fan
    other_date = make_schedule(concert)
    other = UserFactory()
    admitted_client(other, concert)
    theirs = hold(other, other_date, 5)
    pay(client, reservation.id)
    assert Reservation.objects.get(pk=theirs.pk).status == "held"


def test_insufficient_balance_with_a_key_still_frees_the_seat_and_replays(fan, concert, schedule):
    client = admitted_client(fan, concert)
    fund(fan, 1_000)
    reservation = hold(fan, schedule)
    first = pay(client, reservation.id, key="short-1")
    again = pay(client, reservation.id, key="short-1")
    assert first.status_code == again.status_code == 402
    assert again.json() == first.json()
    assert Reservation.objects.get(pk=reservation.pk).status == "cancelled"
    assert Payment.objects.get().failure_reason == "insufficient_balance"


# --- issue 9: one owner per rule, and the defects it closed ---------------------


def test_an_operator_cannot_refund_a_failed_payment(fan, concert, schedule):
    """Defect (issue 9): payment_refund_by_operator did not check the payment's status."""
    from payments import services
    from payments.exceptions import PaymentNotRefundable

    admitted_client(fan, concert)
    reservation = hold(fan, schedule)
    response = pay(admitted_client(fan, concert), reservation.id)  # ₩0 wallet: refused
    assert response.status_code == 402
    failed = Payment.objects.get(status="failed")
    with pytest.raises(PaymentNotRefundable):
        services.payment_refund_by_operator(payment_id=failed.pk, now=timezone.now())
    assert not LedgerEntry.objects.filter(kind="refund").exists()
    assert Payment.objects.get(pk=failed.pk).status == "failed"


def test_an_operator_refund_of_a_paid_booking_goes_through_the_cancel_rules(paying_fan):
    from payments import services

    fan, client, reservation = paying_fan
    payment_id = pay(client, reservation.id).json()["payment_id"]
    result = services.payment_refund_by_operator(payment_id=payment_id, now=timezone.now())
    assert result.refunded_amount == 100_000
    assert Payment.objects.get(pk=payment_id).status == "refunded"
    reservation.refresh_from_db()
    assert (reservation.status, reservation.end_reason) == ("cancelled", "refunded")
    assert wallet_selectors.wallet_balance(user_id=fan.pk) == 150_000


def test_cancelling_a_confirmed_booking_with_no_payment_is_a_clear_409(paying_fan):
    """Defect (issue 9): booking_cancel read payment.amount without a None check (a 500)."""
    fan, client, reservation = paying_fan
    Reservation.objects.filter(pk=reservation.pk).update(status="confirmed", expires_at=None)
    response = token_client(fan).delete(f"/api/v1/reservations/{reservation.id}")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "payment_missing"
    assert Reservation.objects.get(pk=reservation.pk).status == "confirmed"


def test_every_way_a_hold_ends_records_why(paying_fan, schedule, other_fan, concert):
    fan, client, reservation = paying_fan
    assert pay(client, reservation.id).status_code == 201
    reservation.refresh_from_db()
    assert (reservation.status, reservation.end_reason) == ("confirmed", "")
    cancelled = hold(other_fan, schedule, 7)
    token_client(other_fan).delete(f"/api/v1/reservations/{cancelled.id}")
    short = hold(other_fan, schedule, 8)
    pay(admitted_client(other_fan, concert), short.id)  # ₩0: refused, seat given back
    reasons = dict(Reservation.objects.values_list("id", "end_reason"))
    assert reasons[cancelled.id] == "cancelled" and reasons[short.id] == "payment_failed"


def test_the_payment_answer_built_directly_equals_the_documented_serializer(fan, concert, schedule):
    from payments.models import Payment
    from payments.serializers import PaymentOutput, payment_body

    client = admitted_client(fan, concert)
    wallet_services.wallet_charge(user_id=fan.pk, amount=200_000, now=timezone.now())
    reservation = hold_seat(fan, schedule, 6)
    response = client.post("/api/v1/payments", {"reservation_id": reservation.id})
    assert response.status_code == 201
    stored = Payment.objects.select_related("reservation__seat", "reservation__schedule").get()
    assert response.json() == PaymentOutput(stored).data == payment_body(stored)
    failed = Payment(
        id=9, reservation_id=reservation.id, amount=1, status="failed",
        failure_reason="hold_expired", created_at=timezone.now(),
    )  # fmt: skip
    assert payment_body(failed) == PaymentOutput(failed).data


def test_the_hold_answer_built_directly_equals_the_documented_serializer(fan, concert, schedule):
    from payments.api import ReservationOutput, reservation_body

    client = admitted_client(fan, concert)
    response = client.post("/api/v1/reservations", {"schedule_id": schedule.id, "seat_number": 6})
    assert response.status_code == 201
    held = Reservation.objects.select_related("seat").get(pk=response.json()["reservation_id"])
    now = timezone.now()
    assert response.json() == ReservationOutput(held, context={"now": now}).data
    # A held seat, the same one once its time is up, and a paid one (no expiry).
    lapsed = held.expires_at + timedelta(seconds=1)
    paid = Reservation(
        id=7, schedule_id=schedule.id, seat=held.seat, price=held.price, status="confirmed",
        expires_at=None,
    )  # fmt: skip
    for reservation, when in ((held, now), (held, lapsed), (paid, now)):
        expected = ReservationOutput(reservation, context={"now": when}).data
        assert reservation_body(reservation, now=when) == expected
    assert reservation_body(held, now=lapsed)["status"] == "expired"
