"""Exceptions of chatwire.

Two kinds of protocol error, as in h11: a `LocalProtocolError` means *we* (the code calling
chatwire) tried to do something the spec forbids, a `RemoteProtocolError` means the *peer* sent
bytes the spec forbids. From any input bytes only `RemoteProtocolError` escapes the decoder; that
is the invariant the fuzz tests check.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover - typing only
    from ._events import Event

__all__ = ["LocalProtocolError", "ProtocolError", "RemoteProtocolError"]


class ProtocolError(Exception):
    """Base class of chatwire's protocol errors.

    Attributes:
        section: the section of ``spec/protocol.md`` that the offending frame or call breaks
            (for example ``"2.3"``), or ``None``.
    """

    def __init__(self, message: str, *, section: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.section = section

    def __str__(self) -> str:
        if self.section is None:
            return self.message
        return f"{self.message} (spec {self.section})"


class LocalProtocolError(ProtocolError):
    """Our own side tried something the spec forbids: an invalid event, or an event that is
    illegal in the connection's current state. Nothing was put on the wire."""


class RemoteProtocolError(ProtocolError):
    """The peer sent bytes the spec forbids. The connection cannot go on (spec 6.2).

    Attributes:
        offset: byte offset in the received stream (counting from 0 at the first byte received
            on the connection) of the offending header, payload part or byte, or ``None``.
        reply: the event the spec prescribes sending before closing, if any: a server that
            meets a malformed first frame answers ``Refused()`` (``NE``, spec 3.1.1 and 6.3).
    """

    def __init__(
        self,
        message: str,
        *,
        section: str | None = None,
        offset: int | None = None,
        reply: Event | None = None,
    ) -> None:
        super().__init__(message, section=section)
        self.offset = offset
        self.reply = reply

    def __str__(self) -> str:
        text = super().__str__()
        if self.offset is not None:
            text = f"{text} at byte {self.offset}"
        return text
