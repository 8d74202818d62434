from config.errors import DomainError, NotFound


class HoldExpired(DomainError):
    code = "hold_expired"
    http_status = 409
    message = "Your hold on this seat expired before payment, so the seat went back on sale."


class AlreadyPaid(DomainError):
    code = "already_paid"
    http_status = 409
    message = "This reservation is already paid."


class ReservationNotPayable(DomainError):
    code = "reservation_not_payable"
    http_status = 409
    message = "This reservation was cancelled and can no longer be paid."


class CancellationClosed(DomainError):
    code = "cancellation_closed"
    http_status = 409
    message = "Bookings for this date can no longer be cancelled: booking has closed."


class PaymentNotFound(NotFound):
    code = "payment_not_found"
    message = "No such payment."


class PaymentNotRefundable(DomainError):
    code = "payment_not_refundable"
    http_status = 409
    message = "Only a paid payment can be refunded."


class PaymentMissing(DomainError):
    code = "payment_missing"
    http_status = 409
    message = "This booking has no payment to refund; please contact support."


class CheckoutInvalid(DomainError):
    code = "checkout_invalid"
    http_status = 400
    message = "A payment covers 1 to 10 held seats of one concert."


class CheckoutNotFound(NotFound):
    code = "checkout_not_found"
    message = "No such checkout."
