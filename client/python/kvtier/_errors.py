"""kvtier.Error and its subclasses: a failed call's status code (gRPC numbering) and message."""

from __future__ import annotations

_CODE_NAMES = {
    1: "CANCELLED",
    2: "UNKNOWN",
    3: "INVALID_ARGUMENT",
    4: "DEADLINE_EXCEEDED",
    5: "NOT_FOUND",
    6: "ALREADY_EXISTS",
    7: "PERMISSION_DENIED",
    8: "RESOURCE_EXHAUSTED",
    9: "FAILED_PRECONDITION",
    10: "ABORTED",
    11: "OUT_OF_RANGE",
    12: "UNIMPLEMENTED",
    13: "INTERNAL",
    14: "UNAVAILABLE",
    15: "DATA_LOSS",
}


class Error(Exception):
    """A kvtier call failed. ``code`` is the status code (gRPC's numbers), ``code_name`` its name
    ("NOT_FOUND"), ``message`` the daemon's (or client library's) message."""

    def __init__(self, code: int, message: str):
        self.code = int(code)
        self.code_name = _CODE_NAMES.get(self.code, f"CODE_{self.code}")
        self.message = message
        super().__init__(f"{self.code_name}: {message}")


class InvalidArgumentError(Error, ValueError):
    """INVALID_ARGUMENT: a bad layout, key batch or buffer."""


class NotFoundError(Error, LookupError):
    """NOT_FOUND: e.g. a namespace id the daemon does not know."""


class ResourceExhaustedError(Error):
    """RESOURCE_EXHAUSTED: no room in the cache even after eviction."""


class UnavailableError(Error, ConnectionError):
    """UNAVAILABLE: no kvtierd answering on the socket."""


class DeadlineExceededError(Error, TimeoutError):
    """DEADLINE_EXCEEDED: the call ran past its deadline."""


_BY_CODE = {
    3: InvalidArgumentError,
    4: DeadlineExceededError,
    5: NotFoundError,
    8: ResourceExhaustedError,
    14: UnavailableError,
}


def from_status(code: int, message: str) -> Error:
    """The exception for a status (used by the C++ binding)."""
    return _BY_CODE.get(int(code), Error)(code, message)
