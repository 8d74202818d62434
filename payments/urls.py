from django.urls import path

from payments import api, views

urlpatterns = [
    path("reservations/<int:reservation_id>/pay/", views.payment_confirm, name="payment-confirm"),
    path("payments/<int:payment_id>/", views.payment_detail, name="payment-detail"),
    path("tickets/", views.ticket_list, name="tickets"),
    path("tickets/<int:reservation_id>/cancel/", views.ticket_cancel, name="ticket-cancel"),
]

api_urlpatterns = [
    path("payments", api.PaymentListApi.as_view(), name="api-payment-list"),
    path("payments/<int:payment_id>", api.PaymentDetailApi.as_view(), name="api-payment-detail"),
    path("tickets", api.TicketListApi.as_view(), name="api-ticket-list"),
    path(
        "reservations/<int:reservation_id>",
        api.ReservationDetailApi.as_view(),
        name="api-reservation-detail",
    ),
]
