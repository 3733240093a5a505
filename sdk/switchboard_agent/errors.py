"""The exceptions the SDK raises to your code (everything else it logs and survives)."""

from __future__ import annotations


class SwitchboardError(Exception):
    """Base class of the SDK's own errors."""


class AuthenticationError(SwitchboardError):
    """The server refused the API key at the handshake (missing, unknown or revoked).

    `Agent.run()` raises it instead of reconnecting: retrying a refused key cannot succeed.
    """

    def __init__(self, status: int, url: str) -> None:
        super().__init__(f"Switchboard refused the API key (HTTP {status}) at {url}")
        self.status = status


class NotConnectedError(SwitchboardError, ConnectionError):
    """The agent has no connection to the server, or lost it while waiting for an answer."""


class HistoryError(SwitchboardError):
    """The server answered a history request with an error (for example an unknown call)."""
