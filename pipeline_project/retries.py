"""Which failures deserve another attempt: a storage or network hiccup (a dropped connection, a timeout, a
server restarting, a busy database) does; bad input, a missing dataset or a bug does not, since trying again
would fail the same way and, for a separation, cost minutes each time."""

from __future__ import annotations

import errno

from pipeline_project.errors import PipelineError

TRANSIENT_ERRNOS = {
    errno.EIO,
    errno.EAGAIN,
    errno.EBUSY,
    errno.ETIMEDOUT,
    errno.ECONNRESET,
    errno.ECONNREFUSED,
    errno.ECONNABORTED,
    errno.EHOSTUNREACH,
    errno.ENETUNREACH,
    errno.ENETDOWN,
    errno.ESTALE,
    errno.EPIPE,
}
# MLflow's error codes for a server that is overloaded or briefly down.
TRANSIENT_MLFLOW_CODES = {"TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED"}
MAX_RETRIES = 4
FIRST_DELAY_SECONDS = 2.0


def is_transient(error: BaseException | None) -> bool:
    """True when `error`, or an error it was raised from, is a passing storage or network failure."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, PipelineError):
            return False
        if isinstance(error, (ConnectionError, TimeoutError)):
            return True
        if isinstance(error, OSError) and error.errno in TRANSIENT_ERRNOS:
            return True
        if type(error).__name__ == "OperationalError" and "database is locked" in str(error):
            return True
        if getattr(error, "error_code", None) in TRANSIENT_MLFLOW_CODES:
            return True
        error = error.__cause__ or error.__context__
    return False


def backoff_seconds(retry_number: int, first: float = FIRST_DELAY_SECONDS, cap: float = 120.0) -> float:
    """Exponential backoff: 2, 4, 8, 16 s ... before retry 1, 2, 3, 4 ..."""
    return min(cap, first * 2**retry_number)
