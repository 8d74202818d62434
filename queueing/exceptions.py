from django.utils import timezone

from config.errors import DomainError, NotFound


class QueueGateError(DomainError):
    """Not now: the fan's turn does not let this through. Never stored as an
    idempotent answer, so the same request can succeed once the turn comes."""

    http_status = 403
    replayable = False


class QueueTokenMissing(QueueGateError):
    code = "queue_token_missing"
    message = "This needs your waiting-room token (X-Queue-Token). Get in line first."
    page_message = "Booking opens when it is your turn: press “Get in line” first."


class QueueTokenInvalid(QueueGateError):
    code = "queue_token_invalid"
    message = "That waiting-room token is not valid for you."
    page_message = "Your place in line was not found. Please get in line again."


class QueueTokenWaiting(QueueGateError):
    code = "queue_token_waiting"
    message = "You are still in the waiting room; please wait for your turn."


class QueueTokenExpired(QueueGateError):
    code = "queue_token_expired"
    message = "Your turn has ended. Get in line again to continue."


class QueueTokenWrongConcert(QueueGateError):
    code = "queue_token_wrong_concert"
    message = "That waiting-room token is for another concert."
    page_message = "You are in line for a different concert. Get in line for this one first."


class QueueTokenUnknown(NotFound):
    """For the polling endpoint: no token with that key."""

    code = "queue_token_not_found"
    message = "No waiting-room token with that key."


class ConcertNotFound(NotFound):
    code = "concert_not_found"
    message = "No such concert."


class PollTooSoon(DomainError):
    code = "poll_too_soon"
    http_status = 429
    message = "Polled too soon; wait before asking again."

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            f"Polled too soon; try again in {retry_after} s.",
            details={"retry_after_seconds": retry_after},
            headers={"Retry-After": str(retry_after)},
        )


class QueueNotOpen(DomainError):
    """A scheduled sale's line is not open yet: before its pre-queue window (or, with
    no window, before the on-sale time). The details say when it opens."""

    code = "queue_not_open"
    http_status = 409
    message = "The line for this concert is not open yet."
    replayable = False

    def __init__(self, *, sale_starts_at, opens_at) -> None:
        def local(moment) -> str:
            return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M:%S %Z")

        if opens_at == sale_starts_at:
            message = (
                f"The line for this concert opens when tickets go on sale, at {local(opens_at)}."
            )
        else:
            message = (
                f"The line for this concert opens at {local(opens_at)}; tickets go on sale at "
                f"{local(sale_starts_at)}."
            )
        super().__init__(
            message,
            details={
                "sale_starts_at": sale_starts_at.isoformat(),
                "line_opens_at": opens_at.isoformat(),
            },
        )


class SaleAlreadyStarted(DomainError):
    code = "sale_already_started"
    http_status = 409
    message = "This sale has started; its schedule can no longer be changed."


class CapacityInvalid(DomainError):
    code = "capacity_invalid"
    http_status = 400
    message = "Capacity is a whole number of fans, from 0 to 100,000."
