import pytest

from tests.factories import ConcertFactory, make_schedule

pytestmark = pytest.mark.django_db


def test_concert_list_is_public_and_paginated(anon_client):
    ConcertFactory.create_batch(25)
    response = anon_client.get("/api/v1/concerts")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"count", "next", "previous", "results"}
    assert body["count"] == 25
    assert len(body["results"]) == 20
    assert body["previous"] is None and body["next"]
    assert set(body["results"][0]) == {"concert_id", "title", "artist", "venue", "description"}
    second = anon_client.get(body["next"]).json()
    assert len(second["results"]) == 5


def test_concert_detail_lists_its_schedules_in_time_order(anon_client):
    concert = ConcertFactory(title="Live")
    from datetime import timedelta

    later = make_schedule(concert, starts_in=timedelta(days=9))
    sooner = make_schedule(concert, starts_in=timedelta(days=3))
    response = anon_client.get(f"/api/v1/concerts/{concert.id}")
    assert response.status_code == 200
    body = response.json()
    assert {"concert_id", "title", "artist", "venue", "description", "schedules"} <= set(body)
    assert [s["schedule_id"] for s in body["schedules"]] == [sooner.id, later.id]
    assert {"schedule_id", "starts_at"} <= set(body["schedules"][0])


def test_concert_detail_does_not_reveal_availability(anon_client):
    concert = ConcertFactory()
    make_schedule(concert)
    text = anon_client.get(f"/api/v1/concerts/{concert.id}").content.decode()
    assert "available" not in text and "seats" not in text


def test_concert_detail_query_count_does_not_grow_with_schedules(
    anon_client, django_assert_max_num_queries
):
    concert = ConcertFactory()
    for _ in range(6):
        make_schedule(concert)
    with django_assert_max_num_queries(2):
        assert anon_client.get(f"/api/v1/concerts/{concert.id}").status_code == 200
