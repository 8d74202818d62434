from django.urls import path

from payments import api, views

urlpatterns = [
    path("reservations/<int:reservation_id>/", views.reservation_detail, name="reservation-detail"),
    path(
        "reservations/<int:reservation_id>/cancel/",
        views.reservation_cancel,
        name="reservation-cancel",
    ),
    path("reservations/<int:reservation_id>/pay/", views.payment_confirm, name="payment-confirm"),
    path("payments/<int:payment_id>/", views.payment_detail, name="payment-detail"),
    path("tickets/", views.ticket_list, name="tickets"),
]

api_urlpatterns = [
    path("reservations", api.ReservationListApi.as_view(), name="api-reservation-list"),
    path("payments", api.PaymentListApi.as_view(), name="api-payment-list"),
    path("payments/<int:payment_id>", api.PaymentDetailApi.as_view(), name="api-payment-detail"),
    path("tickets", api.TicketListApi.as_view(), name="api-ticket-list"),
    path(
        "reservations/<int:reservation_id>",
        api.ReservationDetailApi.as_view(),
        name="api-reservation-detail",
    ),
]
