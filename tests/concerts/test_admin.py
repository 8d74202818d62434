import pytest

from concerts.models import Schedule
from tests.factories import ConcertFactory, make_schedule

pytestmark = pytest.mark.django_db


def test_operator_adds_a_schedule_and_gets_its_50_seats(operator_client):
    concert = ConcertFactory()
    response = operator_client.post(
        "/admin/concerts/schedule/add/",
        {
            "concert": concert.id,
            "starts_at_0": "2030-05-01",
            "starts_at_1": "19:00:00",
            "booking_opens_at_0": "2030-04-01",
            "booking_opens_at_1": "10:00:00",
            "booking_closes_at_0": "2030-05-01",
            "booking_closes_at_1": "17:00:00",
            "seat_price": "88000",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    schedule = Schedule.objects.get(concert=concert)
    assert schedule.seats.count() == 50
    assert set(schedule.seats.values_list("price", flat=True)) == {88000}


def test_operator_add_form_refuses_an_inverted_window(operator_client):
    concert = ConcertFactory()
    response = operator_client.post(
        "/admin/concerts/schedule/add/",
        {
            "concert": concert.id,
            "starts_at_0": "2030-05-01",
            "starts_at_1": "19:00:00",
            "booking_opens_at_0": "2030-05-02",
            "booking_opens_at_1": "10:00:00",
            "booking_closes_at_0": "2030-05-01",
            "booking_closes_at_1": "17:00:00",
            "seat_price": "88000",
        },
    )
    assert response.status_code == 200
    assert not Schedule.objects.exists()


def test_schedule_admin_page_shows_its_50_seats(operator_client):
    schedule = make_schedule()
    response = operator_client.get(f"/admin/concerts/schedule/{schedule.id}/change/")
    assert response.status_code == 200
    assert response.content.count(b'name="seats-') >= 50


def test_operator_edits_one_seat_price_and_a_zero_price_is_refused(operator_client):
    schedule = make_schedule(seat_price=10_000)
    seat_ids = list(schedule.seats.order_by("number").values_list("id", flat=True))
    data = {
        "concert": schedule.concert_id,
        "starts_at_0": schedule.starts_at.strftime("%Y-%m-%d"),
        "starts_at_1": schedule.starts_at.strftime("%H:%M:%S"),
        "booking_opens_at_0": schedule.booking_opens_at.strftime("%Y-%m-%d"),
        "booking_opens_at_1": schedule.booking_opens_at.strftime("%H:%M:%S"),
        "booking_closes_at_0": schedule.booking_closes_at.strftime("%Y-%m-%d"),
        "booking_closes_at_1": schedule.booking_closes_at.strftime("%H:%M:%S"),
        "seats-TOTAL_FORMS": "50",
        "seats-INITIAL_FORMS": "50",
        "seats-MIN_NUM_FORMS": "0",
        "seats-MAX_NUM_FORMS": "0",
    }
    for index, seat_id in enumerate(seat_ids):
        data[f"seats-{index}-id"] = str(seat_id)
        data[f"seats-{index}-schedule"] = str(schedule.id)
        data[f"seats-{index}-price"] = "10000"
    data["seats-0-price"] = "25000"
    operator_client.post(f"/admin/concerts/schedule/{schedule.id}/change/", data)
    assert schedule.seats.get(number=1).price == 25000

    data["seats-1-price"] = "0"
    response = operator_client.post(f"/admin/concerts/schedule/{schedule.id}/change/", data)
    assert response.status_code == 200  # form redisplayed with an error, not a 500
    assert schedule.seats.get(number=2).price == 10000
