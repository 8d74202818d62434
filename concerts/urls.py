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
    path(
        "concerts/<int:concert_id>/waitlist/<int:schedule_id>/join/",
        views.waitlist_join,
        name="waitlist-join",
    ),
    path("waitlist/", views.waitlist_page, name="waitlist"),
    path("waitlist/entries/", views.waitlist_fragment, name="waitlist-entries"),
    path("waitlist/<int:schedule_id>/leave/", views.waitlist_leave, name="waitlist-leave"),
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
    path(
        "schedules/<int:schedule_id>/waitlist",
        api.WaitlistJoinApi.as_view(),
        name="api-schedule-waitlist",
    ),
    path("waitlist", api.WaitlistListApi.as_view(), name="api-waitlist"),
]
