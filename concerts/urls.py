from django.urls import path

from concerts import api, views

urlpatterns = [
    path("", views.home, name="home"),
    path("concerts/<int:concert_id>/", views.concert_detail, name="concert-detail"),
    path("concerts/<int:concert_id>/book/", views.booking, name="booking"),
    path("concerts/<int:concert_id>/book/<int:schedule_id>/", views.booking, name="booking-date"),
    path(
        "concerts/<int:concert_id>/book/<int:schedule_id>/seats/",
        views.seat_map_fragment,
        name="seat-map",
    ),
    path(
        "concerts/<int:concert_id>/book/<int:schedule_id>/hold/",
        views.seat_hold,
        name="seat-hold",
    ),
]

api_urlpatterns = [
    path("concerts", api.ConcertListApi.as_view(), name="api-concert-list"),
    path("concerts/<int:concert_id>", api.ConcertDetailApi.as_view(), name="api-concert-detail"),
    path(
        "concerts/<int:concert_id>/dates", api.ConcertDatesApi.as_view(), name="api-concert-dates"
    ),
    path(
        "schedules/<int:schedule_id>/seats",
        api.ScheduleSeatsApi.as_view(),
        name="api-schedule-seats",
    ),
]
