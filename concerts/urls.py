from django.urls import path

from concerts import api, views

urlpatterns = [
    path("", views.home, name="home"),
    path("concerts/<int:concert_id>/", views.concert_detail, name="concert-detail"),
    path("concerts/<int:concert_id>/book/", views.booking, name="booking"),
]

api_urlpatterns = [
    path("concerts", api.ConcertListApi.as_view(), name="api-concert-list"),
    path("concerts/<int:concert_id>", api.ConcertDetailApi.as_view(), name="api-concert-detail"),
]
