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
    path("cart/", views.cart_page, name="cart"),
    path("cart/<int:concert_id>/checkout/", views.cart_checkout, name="cart-checkout"),
]

api_urlpatterns = [
    path("reservations", api.ReservationListApi.as_view(), name="api-reservation-list"),
    path("payments", api.PaymentListApi.as_view(), name="api-payment-list"),
    path("checkouts", api.CheckoutListApi.as_view(), name="api-checkout-list"),
    path(
        "checkouts/<int:checkout_id>", api.CheckoutDetailApi.as_view(), name="api-checkout-detail"
    ),
    path("payments/<int:payment_id>", api.PaymentDetailApi.as_view(), name="api-payment-detail"),
    path("tickets", api.TicketListApi.as_view(), name="api-ticket-list"),
    path(
        "reservations/<int:reservation_id>",
        api.ReservationDetailApi.as_view(),
        name="api-reservation-detail",
    ),
]
