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
