"""Frame codec: bytes of one frame <-> one event, without state.

Two parsers implement the same small interface (`Parser`):

- `ConstructParser` parses with the construct declarations of `_wire.py`, the reference.
- `FastParser` is hand-written for speed (construct's interpreted parser costs several
  microseconds per frame): a cached regular expression for headers and one reader per message.

``tests/test_codec.py`` runs both on arbitrary input (hypothesis) and requires identical events
and identical errors (section and offset); the connection uses `FastParser` unless asked
otherwise. Encoding likewise has `encode` (fast) and `encode_reference` (construct ``build``),
compared by the same tests.

Everything that identifies a message is derived from `_wire.MESSAGES`: which (direction, code,
number of sizes) names which message, how long its head is, the range of each size. No rule is
written twice.

Errors are `FrameError` with an offset relative to the frame's first byte; the connection adds
the stream offset and turns them into `RemoteProtocolError`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from construct import Container

from ._errors import LocalProtocolError
from ._events import (
    Accepted,
    Event,
    File,
    FileRelay,
    ListReply,
    ListRequest,
    Login,
    Message,
    MessageRelay,
    NickChanged,
    NickRequest,
    Notice,
    Quit,
    Refused,
)
from ._limits import HEADER_SIZE, NICK_MAX, SIZE_RANGES
from ._text import file_name_error
from ._wire import MESSAGES, Code, Direction, FrameError, GenericHeader, describe_header

__all__ = [
    "EVENT_MESSAGES",
    "FAST_READERS",
    "ConstructParser",
    "FastParser",
    "Parser",
    "encode",
    "encode_reference",
    "head_length",
    "identify",
]

# --- Derived from the declarations ------------------------------------------------------------

# (direction, code, number of size fields) -> message name (spec 2.6).
_SHAPES: dict[tuple[Direction, Code | None, int], str] = {
    (spec.direction, spec.header.code, len(spec.header.fields)): name
    for name, spec in MESSAGES.items()
}
_CODES_BY_DIRECTION: dict[Direction, set[Code | None]] = {
    direction: {code for (d, code, _n) in _SHAPES if d is direction} for direction in Direction
}
# message name -> ((low, high) per size field, nonzero field index or -1, its section)
_RANGES: dict[str, tuple[tuple[tuple[int, int], ...], int, str]] = {}
for _name, _spec in MESSAGES.items():
    _nonzero = _spec.header.nonzero
    _RANGES[_name] = (
        tuple(SIZE_RANGES[f] for f in _spec.header.fields),
        -1 if _nonzero is None else _spec.header.fields.index(_nonzero[0]),
        "" if _nonzero is None else _nonzero[1],
    )
_STREAMED = frozenset(name for name, spec in MESSAGES.items() if spec.streamed)

#: event class -> spec message name
EVENT_MESSAGES: Mapping[type[Event], str] = {
    Login: "login",
    Accepted: "ACC",
    Refused: "NE",
    ListRequest: "list",
    ListReply: "list-reply",
    NickRequest: "nick",
    NickChanged: "NC",
    File: "file",
    Quit: "quit",
    Message: "msg",
    FileRelay: "file-relay",
    MessageRelay: "msg-relay",
    Notice: "msg-relay",
}


def identify(direction: Direction, code: Code | None, sizes: tuple[int, ...]) -> str:
    """The name of the message a header starts (spec 2.6), or `FrameError` (section 2.6)."""
    name = _SHAPES.get((direction, code, len(sizes)))
    if name is not None:
        return name
    sender = "client" if direction is Direction.C2S else "server"
    shown = describe_header(code, sizes)
    if code in _CODES_BY_DIRECTION[direction]:
        raise FrameError(f"header {shown} has the wrong number of size fields", section="2.6")
    raise FrameError(f"a {sender} never sends a header like {shown}", section="2.6")


def head_length(name: str, sizes: tuple[int, ...]) -> int:
    """Bytes from the frame's first byte to the end of its parsed part: the whole frame, or for
    a file everything before the data (including the second header)."""
    length = HEADER_SIZE + sum(sizes)
    if name in _STREAMED:
        length += HEADER_SIZE
    return length


class Parser(Protocol):
    """What the connection needs from a parser. All offsets are relative to the frame start."""

    def header(self, block: bytes, start: int) -> tuple[Code | None, tuple[int, ...]]:
        """Parse the generic header at ``block[start:start + 10]`` (spec 2.3)."""

    def check(self, name: str, block: bytes, start: int, sizes: tuple[int, ...]) -> None:
        """Check the header's sizes for message ``name`` (spec 2.7) before any payload is read."""

    def frame(self, name: str, block: bytes, start: int, sizes: tuple[int, ...]) -> Event:
        """Parse the frame (or file head) of ``head_length(name, sizes)`` bytes at ``start``."""


# --- The fast path ------------------------------------------------------------------------------

# spec 2.3 as one expression over exactly 10 bytes: code [SP size [SP size]] / size, then spaces.
# The codes come from the Code enum (spec 2.4), longest first, so none is written here again.
_SIZE = rb"(0|[1-9][0-9]*)"
_CODES = b"|".join(
    re.escape(code.value.encode("ascii")) for code in sorted(Code, key=lambda c: -len(c.value))
)
_HEADER_RE = re.compile(
    rb"(?:(" + _CODES + rb")(?: " + _SIZE + rb")?(?: " + _SIZE + rb")?|" + _SIZE + rb") *"
)
_CODE_OF = {code.value.encode("ascii"): code for code in Code}
# Parsed headers by their 10 bytes, shared by every connection. Bounded; when full it is emptied
# and refilled (no per-hit bookkeeping), so no peer can fill it for good and leave everyone else
# on the regular expression.
_HEADER_CACHE: dict[bytes, tuple[Code | None, tuple[int, ...]]] = {}
_HEADER_CACHE_MAX = 8192


def _utf8(block: bytes, start: int, end: int, frame_start: int) -> str:
    try:
        return block[start:end].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _not_utf8(exc, start, frame_start) from exc


def _not_utf8(exc: UnicodeDecodeError, start: int, frame_start: int) -> FrameError:
    # spec 2.8.2; the offset is that of the first byte that does not begin a valid character.
    return FrameError(
        f"payload is not valid UTF-8: {exc.reason}",
        section="2.8.2",
        offset=start - frame_start + exc.start,
    )


def _file_name(block: bytes, start: int, end: int, frame_start: int) -> str:
    name = _utf8(block, start, end, frame_start)
    error = file_name_error(name)
    if error is not None:
        raise FrameError(error, section="2.8.5", offset=start - frame_start)
    return name


def _size_header(block: bytes, start: int, frame_start: int) -> int:
    # The second header of a file frame: a bare size (spec 2.5), checked like any header.
    try:
        code, sizes = FastParser.header(block, start)
    except FrameError as exc:
        exc.offset = start - frame_start
        raise
    if code is not None or len(sizes) != 1:
        raise FrameError(
            f"expected a header '<file_size>', got {describe_header(code, sizes)}",
            section="2.6",
            offset=start - frame_start,
        )
    return sizes[0]


class FastParser:
    """Hand-written parser, equal to `ConstructParser` (tested) and several times faster."""

    @staticmethod
    def header(block: bytes, start: int) -> tuple[Code | None, tuple[int, ...]]:
        raw = block[start : start + HEADER_SIZE]
        parsed = _HEADER_CACHE.get(raw)
        if parsed is not None:
            return parsed
        match = _HEADER_RE.fullmatch(raw)
        if match is None:
            raise FrameError(_header_problem(raw), section="2.3")
        code_bytes, first, second, bare = match.groups()
        if code_bytes is None:
            parsed = (None, (int(bare),))
        else:
            parsed = (_CODE_OF[code_bytes], tuple(int(s) for s in (first, second) if s is not None))
        if len(_HEADER_CACHE) >= _HEADER_CACHE_MAX:
            _HEADER_CACHE.clear()  # self-healing, see _HEADER_CACHE
        _HEADER_CACHE[raw] = parsed
        return parsed

    @staticmethod
    def check(name: str, block: bytes, start: int, sizes: tuple[int, ...]) -> None:
        ranges, nonzero, section = _RANGES[name]
        for (low, high), value, field in zip(
            ranges, sizes, MESSAGES[name].header.fields, strict=True
        ):
            if not low <= value <= high:
                raise FrameError(f"{field} {value} is out of range {low}..{high}", section="2.7")
        if nonzero >= 0 and sizes[nonzero] == 0:
            field = MESSAGES[name].header.fields[nonzero]
            raise FrameError(f"{field} must not be 0 here", section=section)

    @staticmethod
    def frame(name: str, block: bytes, start: int, sizes: tuple[int, ...]) -> Event:
        return FAST_READERS[name](block, start, sizes)


def _header_problem(raw: bytes) -> str:
    # Only for the error message; the verdict is the regular expression's.
    if not raw.strip(b" "):
        return "empty header: 10 spaces"
    return f"header {raw!r} does not match the grammar"  # the section (2.3) is the error's


def _read_login(block: bytes, start: int, sizes: tuple[int, ...]) -> Event:
    p = start + HEADER_SIZE
    return Login(nick=_utf8(block, p, p + sizes[0], start))


def _read_nick(block: bytes, start: int, sizes: tuple[int, ...]) -> Event:
    p = start + HEADER_SIZE
    return NickRequest(nick=_utf8(block, p, p + sizes[0], start))


# The hottest events are built without re-running their __post_init__ checks: the reader has
# just checked the same things (UTF-8, sizes within range). tests/test_connection.py rebuilds
# every decoded event through its constructor and requires equality.
_new = object.__new__
_set = object.__setattr__


def _read_msg(block: bytes, start: int, sizes: tuple[int, ...]) -> Event:
    # The hottest reader: `_utf8` written out (one call less per chat frame).
    p = start + HEADER_SIZE
    try:
        text = block[p : p + sizes[0]].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _not_utf8(exc, p, start) from exc
    event = _new(Message)
    _set(event, "text", text)
    return event


def _read_msg_relay(block: bytes, start: int, sizes: tuple[int, ...]) -> Event:
    p = start + HEADER_SIZE
    q = p + sizes[0]
    sender = _utf8(block, p, q, start)
    text = _utf8(block, q, q + sizes[1], start)
    event: Event
    if not sender:
        event = _new(Notice)  # spec 3.1.8
    else:
        event = _new(MessageRelay)
        _set(event, "sender", sender)
    _set(event, "text", text)
    return event


def _read_list_reply(block: bytes, start: int, sizes: tuple[int, ...]) -> Event:
    p = start + HEADER_SIZE
    text = _utf8(block, p, p + sizes[0], start)
    if not text:
        return ListReply(nicks=())
    nicks = text.split("\n")
    for nick in nicks:
        # spec 2.8.7: every element 1..NICK_MAX bytes (a line feed cannot be inside one).
        if not nick or (len(nick) if nick.isascii() else len(nick.encode("utf-8"))) > NICK_MAX:
            raise FrameError(
                f"user list element {nick!r} is not 1 to {NICK_MAX} bytes",
                section="2.8.7",
                offset=HEADER_SIZE,
            )
    return ListReply(nicks=tuple(nicks))


def _read_file(block: bytes, start: int, sizes: tuple[int, ...]) -> Event:
    p = start + HEADER_SIZE
    q = p + sizes[0]
    name = _file_name(block, p, q, start)
    return File(name=name, size=_size_header(block, q, start))


def _read_file_relay(block: bytes, start: int, sizes: tuple[int, ...]) -> Event:
    p = start + HEADER_SIZE
    q = p + sizes[0]
    r = q + sizes[1]
    sender = _utf8(block, p, q, start)
    name = _file_name(block, q, r, start)
    return FileRelay(sender=sender, name=name, size=_size_header(block, r, start))


_ACCEPTED, _REFUSED, _NICK_CHANGED = Accepted(), Refused(), NickChanged()
_LIST_REQUEST, _QUIT = ListRequest(), Quit()

FAST_READERS: dict[str, Callable[[bytes, int, tuple[int, ...]], Event]] = {
    "login": _read_login,
    "ACC": lambda block, start, sizes: _ACCEPTED,
    "NE": lambda block, start, sizes: _REFUSED,
    "list": lambda block, start, sizes: _LIST_REQUEST,
    "list-reply": _read_list_reply,
    "nick": _read_nick,
    "NC": lambda block, start, sizes: _NICK_CHANGED,
    "file": _read_file,
    "quit": lambda block, start, sizes: _QUIT,
    "msg": _read_msg,
    "file-relay": _read_file_relay,
    "msg-relay": _read_msg_relay,
}
assert FAST_READERS.keys() == MESSAGES.keys()


# --- The construct reference path ------------------------------------------------------------

_GENERIC_HEADER = GenericHeader()


def _event_from(name: str, c: Any) -> Event:
    """The event for a parsed construct container of message ``name``."""
    if name == "login":
        return Login(nick=c.nick)
    if name == "nick":
        return NickRequest(nick=c.nick)
    if name == "msg":
        return Message(text=c.text)
    if name == "msg-relay":
        return Notice(text=c.text) if c.nick == "" else MessageRelay(sender=c.nick, text=c.text)
    if name == "list-reply":
        return ListReply(nicks=c.user_list)
    if name == "file":
        return File(name=c.name, size=c.size_header.file_size)
    if name == "file-relay":
        return FileRelay(sender=c.nick, name=c.name, size=c.size_header.file_size)
    return {
        "ACC": _ACCEPTED,
        "NE": _REFUSED,
        "NC": _NICK_CHANGED,
        "list": _LIST_REQUEST,
        "quit": _QUIT,
    }[name]


class ConstructParser:
    """Parses with the construct declarations: slow, and the reference."""

    @staticmethod
    def header(block: bytes, start: int) -> tuple[Code | None, tuple[int, ...]]:
        parsed = _GENERIC_HEADER.parse(block[start : start + HEADER_SIZE])
        return parsed.code, parsed.sizes

    @staticmethod
    def check(name: str, block: bytes, start: int, sizes: tuple[int, ...]) -> None:
        MESSAGES[name].header.parse(block[start : start + HEADER_SIZE])

    @staticmethod
    def frame(name: str, block: bytes, start: int, sizes: tuple[int, ...]) -> Event:
        length = head_length(name, sizes)
        return _event_from(name, MESSAGES[name].head.parse(block[start : start + length]))


# --- Encoding ---------------------------------------------------------------------------------


def _enc_login(e: Login) -> bytes:
    nick = e.nick.encode("utf-8")
    return (b"%d" % len(nick)).ljust(HEADER_SIZE) + nick


def _enc_nick(e: NickRequest) -> bytes:
    nick = e.nick.encode("utf-8")
    return (b"nick %d" % len(nick)).ljust(HEADER_SIZE) + nick


def _enc_msg(e: Message) -> bytes:
    text = e.text.encode("utf-8")
    return (b"msg %d" % len(text)).ljust(HEADER_SIZE) + text


def _enc_msg_relay(e: MessageRelay) -> bytes:
    sender = e.sender.encode("utf-8")
    text = e.text.encode("utf-8")
    return b"".join(((b"msg %d %d" % (len(sender), len(text))).ljust(HEADER_SIZE), sender, text))


def _enc_notice(e: Notice) -> bytes:
    text = e.text.encode("utf-8")
    return (b"msg 0 %d" % len(text)).ljust(HEADER_SIZE) + text


def _enc_list_reply(e: ListReply) -> bytes:
    body = "\n".join(e.nicks).encode("utf-8")
    return (b"%d" % len(body)).ljust(HEADER_SIZE) + body


def _enc_file(e: File) -> bytes:
    name = e.name.encode("utf-8")
    return b"".join(
        ((b"file %d" % len(name)).ljust(HEADER_SIZE), name, (b"%d" % e.size).ljust(HEADER_SIZE))
    )


def _enc_file_relay(e: FileRelay) -> bytes:
    sender = e.sender.encode("utf-8")
    name = e.name.encode("utf-8")
    return b"".join(
        (
            (b"file %d %d" % (len(sender), len(name))).ljust(HEADER_SIZE),
            sender,
            name,
            (b"%d" % e.size).ljust(HEADER_SIZE),
        )
    )


def _constant(frame: bytes) -> Callable[[Any], bytes]:
    return lambda e: frame


_ENCODERS: dict[type[Event], Callable[[Any], bytes]] = {
    Login: _enc_login,
    Accepted: _constant(b"ACC       "),
    Refused: _constant(b"NE        "),
    ListRequest: _constant(b"list      "),
    ListReply: _enc_list_reply,
    NickRequest: _enc_nick,
    NickChanged: _constant(b"NC        "),
    File: _enc_file,
    Quit: _constant(b"quit      "),
    Message: _enc_msg,
    FileRelay: _enc_file_relay,
    MessageRelay: _enc_msg_relay,
    Notice: _enc_notice,
}


def encode(event: Event) -> bytes:
    """The bytes of the frame for ``event``, without any state check.

    For ``File`` and ``FileRelay`` this is the frame's head, up to and including the header with
    the file size; the data follows as ``FileData`` (whose bytes are the data itself).

    Raises:
        LocalProtocolError: ``event`` is not a frame (``FileData``, ``FileEnd``,
            ``ConnectionClosed``).
    """
    encoder = _ENCODERS.get(type(event))
    if encoder is None:
        raise LocalProtocolError(f"{type(event).__name__} is not a frame and has no encoding")
    return encoder(event)


def encode_reference(event: Event) -> bytes:
    """Like `encode`, built by the construct declarations (slow; the reference)."""
    name = EVENT_MESSAGES.get(type(event))
    if name is None:
        raise LocalProtocolError(f"{type(event).__name__} is not a frame and has no encoding")
    values: dict[str, Any] = {}
    if isinstance(event, Login | NickRequest):
        values["nick"] = event.nick
    elif isinstance(event, Message):
        values["text"] = event.text
    elif isinstance(event, MessageRelay):
        values.update(nick=event.sender, text=event.text)
    elif isinstance(event, Notice):
        values.update(nick="", text=event.text)
    elif isinstance(event, ListReply):
        values["user_list"] = list(event.nicks)
    elif isinstance(event, File):
        values.update(name=event.name, file_size=event.size)
    elif isinstance(event, FileRelay):
        values.update(nick=event.sender, name=event.name, file_size=event.size)
    data = MESSAGES[name].head.build(Container(values))
    assert isinstance(data, bytes)  # construct is untyped
    return data
