from django.urls import path

from queueing import api, views

urlpatterns = [
    path("concerts/<int:concert_id>/queue/join/", views.queue_join, name="queue-join"),
    path("concerts/<int:concert_id>/queue/", views.queue_room, name="queue-room"),
    path(
        "concerts/<int:concert_id>/queue/status/",
        views.queue_room_status,
        name="queue-room-status",
    ),
    path("concerts/<int:concert_id>/queue/leave/", views.queue_leave, name="queue-leave"),
]

api_urlpatterns = [
    path("concerts/<int:concert_id>/queue", api.QueueIssueApi.as_view(), name="api-queue-issue"),
    path("queue", api.QueueTokenApi.as_view(), name="api-queue-token"),
    path("concerts/<int:concert_id>/sale", api.SaleScheduleApi.as_view(), name="api-concert-sale"),
]
