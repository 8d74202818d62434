from config.errors import DomainError, NotFound


class ConcertNotFound(NotFound):
    code = "concert_not_found"
    message = "No such concert."


class ScheduleNotFound(NotFound):
    code = "schedule_not_found"
    message = "No such schedule."


class InvalidSchedule(DomainError):
    code = "invalid_schedule"
    http_status = 400
    message = "The schedule's times are inconsistent."


class InvalidPrice(DomainError):
    code = "invalid_price"
    http_status = 400
    message = "A seat price must be a positive whole number of won."


class SeatNotFound(DomainError):
    code = "seat_not_found"
    http_status = 400
    message = "Seat numbers run from 1 to 50."


class SeatUnavailable(DomainError):
    code = "seat_unavailable"
    http_status = 409
    message = "Sorry, that seat was just taken. Please pick another."


class SeatAlreadyYours(DomainError):
    code = "seat_already_yours"
    http_status = 409
    message = "You already hold this seat; see your reservation."


class SeatLimitReached(DomainError):
    code = "seat_limit_reached"
    http_status = 409
    message = "You already hold the most seats allowed for this date."


class BookingClosed(DomainError):
    code = "booking_closed"
    http_status = 409
    message = "Booking for this date is not open."


class ReservationNotFound(NotFound):
    code = "reservation_not_found"
    message = "No such reservation."


class SeatsStillAvailable(DomainError):
    code = "seats_available"
    http_status = 409
    message = "This date still has free seats: hold one instead of joining its waitlist."


class WaitlistEntryNotFound(NotFound):
    code = "waitlist_entry_not_found"
    message = "You are not on this date's waitlist."
