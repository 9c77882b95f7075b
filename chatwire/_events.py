"""The events of chatwire: one class per message of spec 2.6, plus file data and end of stream.

A `Connection` turns received bytes into these events and these events into bytes to send. The
names follow the spec's message names:

=============  ==============  ===============================================================
spec message   direction       event
=============  ==============  ===============================================================
login          client->server  ``Login(nick=...)``
ACC            server->client  ``Accepted()``
NE             server->client  ``Refused()``
list           client->server  ``ListRequest()``
list-reply     server->client  ``ListReply(nicks=(...))``
nick           client->server  ``NickRequest(nick=...)``
NC             server->client  ``NickChanged()``
file           client->server  ``File(name=..., size=...)``, then ``FileData``..., ``FileEnd()``
quit           client->server  ``Quit()``
msg            client->server  ``Message(text=...)``
file-relay     server->client  ``FileRelay(sender=..., name=..., size=...)``, then body events
msg-relay      server->client  ``MessageRelay(sender=..., text=...)``, or ``Notice(text=...)``
                               when the sender is empty (spec 3.1.8)
=============  ==============  ===============================================================

Every event is a frozen, slotted, keyword-only dataclass that validates its own fields when
built, raising `LocalProtocolError`: an event that exists can be put on the wire. Validation
covers what framing needs (types, UTF-8, sizes of spec 2.7, file names of spec 2.8.5); whether a
nick is acceptable (spec 2.8.3) is the server's decision, answered with ``NE``, so ``Login`` and
``NickRequest`` accept any nick that fits the frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ._errors import LocalProtocolError
from ._limits import FILE_MAX, LIST_MAX, NICK_MAX, TEXT_MAX
from ._text import file_name_error

__all__ = [
    "Accepted",
    "ConnectionClosed",
    "Event",
    "File",
    "FileData",
    "FileEnd",
    "FileRelay",
    "ListReply",
    "ListRequest",
    "Login",
    "Message",
    "MessageRelay",
    "NickChanged",
    "NickRequest",
    "Notice",
    "Quit",
    "Refused",
]


def _utf8_size(value: Any, field: str, section: str) -> int:
    if not isinstance(value, str):
        raise LocalProtocolError(
            f"{field} must be a str, not {type(value).__name__}", section=section
        )
    if value.isascii():
        return len(value)
    try:
        return len(value.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise LocalProtocolError(
            f"{field} is not encodable in UTF-8: {exc.reason}", section="2.8.2"
        ) from exc


def _check_size(value: Any, field: str, low: int, high: int, section: str) -> None:
    size = _utf8_size(value, field, section)
    if not low <= size <= high:
        raise LocalProtocolError(
            f"{field} has {size} bytes in UTF-8; the spec allows {low} to {high}", section=section
        )


def _check_file(name: Any, size: Any) -> None:
    _utf8_size(name, "name", "2.8.5")
    error = file_name_error(name)
    if error is not None:
        raise LocalProtocolError(error, section="2.8.5")
    if isinstance(size, bool) or not isinstance(size, int):
        raise LocalProtocolError(f"size must be an int, not {type(size).__name__}", section="2.7")
    if not 0 <= size <= FILE_MAX:
        raise LocalProtocolError(f"file size {size} is out of range 0..{FILE_MAX}", section="2.7")


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Base class of every chatwire event."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Login(Event):
    """``login`` (spec 3.1.1): the client's first frame, asking for ``nick``."""

    nick: str

    def __post_init__(self) -> None:
        _check_size(self.nick, "nick", 0, NICK_MAX, "2.7")


@dataclass(frozen=True, slots=True, kw_only=True)
class Accepted(Event):
    """``ACC`` (spec 3.1.1): the login is accepted."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Refused(Event):
    """``NE`` (spec 3.1.1, 3.1.3): the nick of a login or nick request is refused."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ListRequest(Event):
    """``list`` (spec 3.1.2): ask for the logged-in users."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ListReply(Event):
    """``list-reply`` (spec 3.1.2): the nicks of the logged-in users.

    ``nicks`` may be given as any iterable of str; it is stored as a tuple.
    """

    nicks: tuple[str, ...]

    def __post_init__(self) -> None:
        if isinstance(self.nicks, str):
            raise LocalProtocolError(
                "nicks must be a sequence of str, not one str", section="2.8.7"
            )
        try:
            nicks = tuple(self.nicks)
        except TypeError as exc:
            raise LocalProtocolError(
                f"nicks must be an iterable of str, not {type(self.nicks).__name__}",
                section="2.8.7",
            ) from exc
        total = len(nicks) - 1 if nicks else 0
        for nick in nicks:
            _check_size(nick, "each nick of a user list", 1, NICK_MAX, "2.8.7")
            if "\n" in nick:
                raise LocalProtocolError(
                    "a nick in a user list cannot hold a line feed", section="2.8.7"
                )
            total += _utf8_size(nick, "nick", "2.8.7")
        if total > LIST_MAX:
            raise LocalProtocolError(
                f"user list of {total} bytes exceeds LIST_MAX {LIST_MAX}", section="3.1.2"
            )
        object.__setattr__(self, "nicks", nicks)


@dataclass(frozen=True, slots=True, kw_only=True)
class NickRequest(Event):
    """``nick`` (spec 3.1.3): ask to change nick to ``nick``."""

    nick: str

    def __post_init__(self) -> None:
        _check_size(self.nick, "nick", 0, NICK_MAX, "2.7")


@dataclass(frozen=True, slots=True, kw_only=True)
class NickChanged(Event):
    """``NC`` (spec 3.1.3): the nick request is accepted."""


@dataclass(frozen=True, slots=True, kw_only=True)
class File(Event):
    """``file`` (spec 3.1.4): the client starts sending a file of ``size`` bytes.

    ``FileData`` events carrying exactly ``size`` bytes follow, then ``FileEnd``.
    """

    name: str
    size: int

    def __post_init__(self) -> None:
        _check_file(self.name, self.size)


@dataclass(frozen=True, slots=True, kw_only=True)
class Quit(Event):
    """``quit`` (spec 3.1.5): the client leaves."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Message(Event):
    """``msg`` (spec 3.1.6): the client's text for everyone else.

    ``text`` holds at most ``TEXT_MAX`` bytes of UTF-8; cut longer text with `split_text`.
    """

    text: str

    def __post_init__(self) -> None:
        _check_size(self.text, "text", 0, TEXT_MAX, "3.1.6")


@dataclass(frozen=True, slots=True, kw_only=True)
class FileRelay(Event):
    """``file-relay`` (spec 3.1.7.1): ``sender`` sent a file of ``size`` bytes.

    ``FileData`` events carrying exactly ``size`` bytes follow, then ``FileEnd``.
    """

    sender: str
    name: str
    size: int

    def __post_init__(self) -> None:
        _check_size(self.sender, "sender", 1, NICK_MAX, "3.1.7.1")
        _check_file(self.name, self.size)


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageRelay(Event):
    """``msg-relay`` (spec 3.1.7.2): ``sender`` said ``text``."""

    sender: str
    text: str

    def __post_init__(self) -> None:
        _check_size(self.sender, "sender", 1, NICK_MAX, "3.1.7.2")
        _check_size(self.text, "text", 0, TEXT_MAX, "3.1.7.2")


@dataclass(frozen=True, slots=True, kw_only=True)
class Notice(Event):
    """A notice (spec 3.1.8): a ``msg-relay`` with an empty sender, the server's own words.

    Notices are for people; a client must not act on their content.
    """

    text: str

    def __post_init__(self) -> None:
        _check_size(self.text, "text", 0, TEXT_MAX, "3.1.8")


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class FileData(Event):
    """A piece of the data of a ``file`` or ``file-relay`` frame.

    When received, ``data`` is a read-only ``memoryview`` into the bytes given to
    ``receive_data`` (no copy); convert it with ``bytes(...)`` to keep it.
    """

    data: bytes | bytearray | memoryview

    def __post_init__(self) -> None:
        if not isinstance(self.data, bytes | bytearray | memoryview):
            raise LocalProtocolError(
                f"data must be bytes, bytearray or memoryview, not {type(self.data).__name__}"
            )

    def __repr__(self) -> str:
        data = self.data
        size = data.nbytes if isinstance(data, memoryview) else len(data)
        head = bytes(data[:16])
        return f"FileData(<{size} bytes: {head!r}{'...' if size > 16 else ''}>)"


@dataclass(frozen=True, slots=True, kw_only=True)
class FileEnd(Event):
    """The last byte of a file's data has been received or sent."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionClosed(Event):
    """The peer ended the stream at a frame boundary (spec 6.5), or after ``quit``."""
