from config.errors import DomainError, NotFound


class InvalidAmount(DomainError):
    code = "invalid_amount"
    http_status = 400
    message = "The amount must be a whole number of won."

    def __init__(self, message: str) -> None:
        super().__init__(message, details={"amount": [message]})


class BalanceLimitExceeded(DomainError):
    code = "balance_limit_exceeded"
    http_status = 409
    message = "This charge would take your balance past the maximum allowed."


class InsufficientBalance(DomainError):
    code = "insufficient_balance"
    http_status = 402
    message = "Your wallet balance is too low for this payment."


class LedgerEntryNotFound(NotFound):
    code = "ledger_entry_not_found"
    message = "No such ledger entry."
