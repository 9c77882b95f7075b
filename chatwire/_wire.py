"""construct declarations of every message of spec 2.6: the single source of truth of the framing.

Layout follows the spec: reusable adapters first (the 10-byte header, UTF-8 parts, file names,
user lists), then one struct per message with the spec's own field names, then `MESSAGES`, the
registry the rest of chatwire and the spec-table test read.

Rules:
- construct never sees partial input. The connection cuts a complete frame (or, for a file, its
  head up to the data) using the header's sizes, then parses it here. File data is never parsed
  by construct on the hot path; it streams as chunks.
- Sizes in headers are computed with `Rebuild`, so a caller building a frame never sets a length.
- Every rule broken raises `FrameError`, a `construct.ConstructError` carrying the spec section
  and the byte offset within the frame. The decoder turns it into a `RemoteProtocolError` at one
  boundary (`_codec.py`).
- `PaddedString` is not used anywhere: it pads with NUL, and spec 2.2 pads headers with spaces.

These declarations are the reference. `_codec.py` holds a faster hand-written path; the
hypothesis differential tests in `tests/test_codec.py` show both give identical events, bytes
and errors on arbitrary input.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import construct
from construct import Adapter, Bytes, Container, Rebuild, Struct, this

from ._limits import HEADER_SIZE, NICK_MAX, SIZE_RANGES
from ._text import file_name_error, utf8_len

__all__ = [
    "MESSAGES",
    "Code",
    "Direction",
    "FrameError",
    "GenericHeader",
    "Header",
    "MessageSpec",
    "format_header",
]


class Code(enum.Enum):
    """The codes of spec 2.4, spelled as on the wire."""

    ACC = "ACC"
    NE = "NE"
    NC = "NC"
    LIST = "list"
    NICK = "nick"
    FILE = "file"
    MSG = "msg"
    QUIT = "quit"


_CODES_BY_BYTES = {code.value.encode("ascii"): code for code in Code}


class Direction(enum.Enum):
    """Who sends a message (spec 2.6)."""

    C2S = "C→S"
    S2C = "S→C"


class FrameError(construct.ConstructError):  # type: ignore[misc]
    """A frame breaks the spec. ``offset`` counts from the first byte of the frame."""

    def __init__(self, message: str, *, section: str, offset: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.section = section
        self.offset = offset


def format_header(code: Code | None, sizes: tuple[int, ...]) -> bytes:
    """The one correct header (spec 2.2) for ``code`` (``None``: no code) and ``sizes``."""
    fields = [] if code is None else [code.value]
    fields.extend(str(size) for size in sizes)
    text = " ".join(fields).encode("ascii")
    if len(text) > HEADER_SIZE:  # pragma: no cover - ranges of spec 2.7 make this impossible
        raise ValueError(f"header fields {fields!r} do not fit in {HEADER_SIZE} bytes")
    return text.ljust(HEADER_SIZE, b" ")


def _parse_size(field: bytes) -> int | None:
    # spec 2.3: size = "0" / (%x31-39 *DIGIT). bytes.isdigit() is ASCII-only.
    if not field.isdigit() or (field[0] == 0x30 and len(field) > 1):
        return None
    return int(field)


class GenericHeader(Adapter):  # type: ignore[misc]
    """The 10-byte header of spec 2.2 and 2.3, whatever the message.

    Parses to ``Container(code=Code | None, sizes=tuple[int, ...])`` and checks only the grammar
    of spec 2.3; which code may carry how many sizes is `Header`'s business.
    """

    def __init__(self) -> None:
        super().__init__(Bytes(HEADER_SIZE))

    def _decode(self, obj: bytes, context: Any, path: str) -> Container:
        at = _part_start(context, obj)
        content = obj.rstrip(b" ")  # spec 2.2: padding is spaces, at the end only
        if not content:
            raise FrameError("empty header: 10 spaces", section="2.3", offset=at)
        fields = content.split(b" ")
        if b"" in fields:
            raise FrameError(
                f"header {obj!r} has a leading space or two spaces between fields",
                section="2.3",
                offset=at,
            )
        code = _CODES_BY_BYTES.get(fields[0])
        size_fields = fields if code is None else fields[1:]
        if len(size_fields) > 2 or (code is None and len(size_fields) != 1):
            raise FrameError(f"header {obj!r} has too many fields", section="2.3", offset=at)
        sizes = []
        for field_ in size_fields:
            size = _parse_size(field_)
            if size is None:
                what = "a code or a size" if code is None else "a size"
                raise FrameError(
                    f"header {obj!r}: {field_!r} is not {what} (decimal, no leading zero)",
                    section="2.3",
                    offset=at,
                )
            sizes.append(size)
        return Container(code=code, sizes=tuple(sizes))

    def _encode(self, obj: Any, context: Any, path: str) -> bytes:
        return format_header(obj["code"], tuple(obj["sizes"]))


class Header(Adapter):  # type: ignore[misc]
    """The header of one message: its code (or none) and its named size fields.

    Parses to ``Container(<field>=<int>, ...)`` after checking that the code and number of fields
    are this message's (spec 2.6) and every size is in range (spec 2.7). ``nonzero`` names fields
    that a particular message forbids to be 0, with the section that says so.
    """

    def __init__(
        self,
        code: Code | None,
        *fields: str,
        nonzero: tuple[str, str] | None = None,
    ) -> None:
        super().__init__(GenericHeader())
        self.code = code
        self.fields = fields
        self.nonzero = nonzero

    def _decode(self, obj: Container, context: Any, path: str) -> Container:
        stream = getattr(context, "_io", None)
        at = 0 if stream is None else int(stream.tell()) - HEADER_SIZE
        if obj.code is not self.code or len(obj.sizes) != len(self.fields):
            raise FrameError(
                f"expected a header {self.describe()}, got {describe_header(obj.code, obj.sizes)}",
                section="2.6",
                offset=at,
            )
        values = dict(zip(self.fields, obj.sizes, strict=True))
        self.check(values, offset=at)
        return Container(values)

    def _encode(self, obj: Any, context: Any, path: str) -> Container:
        values = {field: obj[field] for field in self.fields}
        self.check(values)
        return Container(code=self.code, sizes=tuple(values[field] for field in self.fields))

    def check(self, values: Mapping[str, int], offset: int = 0) -> None:
        """Check sizes against spec 2.7 (and ``nonzero``); raise `FrameError` if out of range."""
        for name, value in values.items():
            low, high = SIZE_RANGES[name]
            if not low <= value <= high:
                raise FrameError(
                    f"{name} {value} is out of range {low}..{high}", section="2.7", offset=offset
                )
        if self.nonzero is not None:
            name, section = self.nonzero
            if values[name] == 0:
                raise FrameError(f"{name} must not be 0 here", section=section, offset=offset)

    def describe(self) -> str:
        parts = [] if self.code is None else [self.code.value]
        parts.extend(f"<{field}>" for field in self.fields)
        return "'" + " ".join(parts) + "'"


def describe_header(code: Code | None, sizes: tuple[int, ...]) -> str:
    """A header as spec 2.6 writes it, for error messages: ``'msg 3 5'``."""
    return "'" + format_header(code, sizes).decode("ascii").rstrip(" ") + "'"


def _part_start(context: Any, obj: bytes) -> int:
    # The adapter has just read ``obj``; the stream position is its end.
    stream = getattr(context, "_io", None)
    return 0 if stream is None else int(stream.tell()) - len(obj)


def _decode_utf8(obj: bytes, context: Any) -> str:
    try:
        return obj.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FrameError(
            f"payload is not valid UTF-8: {exc.reason}",
            section="2.8.2",
            offset=_part_start(context, obj) + exc.start,
        ) from exc


class Utf8(Adapter):  # type: ignore[misc]
    """A UTF-8 payload part of a given size (spec 2.8.2)."""

    def _decode(self, obj: bytes, context: Any, path: str) -> str:
        return _decode_utf8(obj, context)

    def _encode(self, obj: str, context: Any, path: str) -> bytes:
        return obj.encode("utf-8")


class FileName(Adapter):  # type: ignore[misc]
    """A file name (spec 2.8.5): UTF-8, no separators, controls or bidi characters."""

    def _decode(self, obj: bytes, context: Any, path: str) -> str:
        name = _decode_utf8(obj, context)
        error = file_name_error(name)
        if error is not None:
            raise FrameError(error, section="2.8.5", offset=_part_start(context, obj))
        return name

    def _encode(self, obj: str, context: Any, path: str) -> bytes:
        error = file_name_error(obj)
        if error is not None:
            raise FrameError(error, section="2.8.5")
        return obj.encode("utf-8")


class UserList(Adapter):  # type: ignore[misc]
    """The answer to ``list`` (spec 2.8.7): nicks separated by one line feed."""

    def _decode(self, obj: bytes, context: Any, path: str) -> tuple[str, ...]:
        text = _decode_utf8(obj, context)
        if not text:
            return ()
        nicks = tuple(text.split("\n"))
        for nick in nicks:
            if not nick or utf8_len(nick) > NICK_MAX:
                raise FrameError(
                    f"user list element {nick!r} is not 1 to {NICK_MAX} bytes",
                    section="2.8.7",
                    offset=_part_start(context, obj),
                )
        return nicks

    def _encode(self, obj: Any, context: Any, path: str) -> bytes:
        return "\n".join(obj).encode("utf-8")


def _sizes(**parts: str) -> Any:
    """A `Rebuild` function: each header field from the UTF-8 length of a payload part."""

    def compute(ctx: Any) -> dict[str, int]:
        return {field: utf8_len(ctx[part]) for field, part in parts.items()}

    return compute


def _list_size(ctx: Any) -> dict[str, int]:
    return {"list_size": utf8_len("\n".join(ctx.user_list))}


def _no_sizes(ctx: Any) -> dict[str, int]:
    return {}


def _file_size(ctx: Any) -> dict[str, int]:
    # A whole frame gives its data; a head alone (the data streams after it) gives file_size.
    if "data" in ctx:
        return {"file_size": len(ctx.data)}
    return {"file_size": ctx.file_size}


# --- One struct per message of spec 2.6, with the spec's field names. -----------------------

# spec 3.1.1 login: {nick_size} [nick]
login = Struct(
    "header" / Rebuild(Header(None, "nick_size"), _sizes(nick_size="nick")),
    "nick" / Utf8(Bytes(this.header.nick_size)),
)
# spec 3.1.1 ACC, 3.1.1/3.1.3 NE, 3.1.3 NC, 3.1.2 list, 3.1.5 quit: a code alone.
acc = Struct("header" / Rebuild(Header(Code.ACC), _no_sizes))
ne = Struct("header" / Rebuild(Header(Code.NE), _no_sizes))
nc = Struct("header" / Rebuild(Header(Code.NC), _no_sizes))
list_request = Struct("header" / Rebuild(Header(Code.LIST), _no_sizes))
quit_request = Struct("header" / Rebuild(Header(Code.QUIT), _no_sizes))
# spec 3.1.2 list-reply: {list_size} [user_list]
list_reply = Struct(
    "header" / Rebuild(Header(None, "list_size"), _list_size),
    "user_list" / UserList(Bytes(this.header.list_size)),
)
# spec 3.1.3 nick: {nick nick_size} [nick]
nick_request = Struct(
    "header" / Rebuild(Header(Code.NICK, "nick_size"), _sizes(nick_size="nick")),
    "nick" / Utf8(Bytes(this.header.nick_size)),
)
# spec 3.1.4 file: {file name_size} [name] {file_size} [data]
file_upload = Struct(
    "header" / Rebuild(Header(Code.FILE, "name_size"), _sizes(name_size="name")),
    "name" / FileName(Bytes(this.header.name_size)),
    "size_header" / Rebuild(Header(None, "file_size"), _file_size),
    "data" / Bytes(this.size_header.file_size),
)
# spec 3.1.6 msg: {msg text_size} [text]
msg = Struct(
    "header" / Rebuild(Header(Code.MSG, "text_size"), _sizes(text_size="text")),
    "text" / Utf8(Bytes(this.header.text_size)),
)
# spec 3.1.7.1 file-relay: {file nick_size name_size} [nick] [name] {file_size} [data]
file_relay = Struct(
    "header"
    / Rebuild(
        Header(Code.FILE, "nick_size", "name_size", nonzero=("nick_size", "3.1.7.1")),
        _sizes(nick_size="nick", name_size="name"),
    ),
    "nick" / Utf8(Bytes(this.header.nick_size)),
    "name" / FileName(Bytes(this.header.name_size)),
    "size_header" / Rebuild(Header(None, "file_size"), _file_size),
    "data" / Bytes(this.size_header.file_size),
)
# spec 3.1.7.2 msg-relay: {msg nick_size text_size} [nick] [text]; nick_size 0 is a notice.
msg_relay = Struct(
    "header"
    / Rebuild(
        Header(Code.MSG, "nick_size", "text_size"), _sizes(nick_size="nick", text_size="text")
    ),
    "nick" / Utf8(Bytes(this.header.nick_size)),
    "text" / Utf8(Bytes(this.header.text_size)),
)


@dataclass(frozen=True, slots=True)
class MessageSpec:
    """One row of the message table of spec 2.6.

    Attributes:
        name: the message's name in the spec (``"msg-relay"``).
        direction: who sends it.
        struct: its construct declaration.
        streamed: the last part (``data``) is streamed as chunks, never parsed whole.
    """

    name: str
    direction: Direction
    struct: construct.Struct
    streamed: bool = False
    #: The struct without the streamed ``data`` part: what is parsed before the body.
    head: construct.Struct = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        head = Struct(*self.struct.subcons[:-1]) if self.streamed else self.struct
        object.__setattr__(self, "head", head)

    @property
    def header(self) -> Header:
        """The message's header adapter (inside its name and its `Rebuild`)."""
        node = self.struct.subcons[0]
        while not isinstance(node, Header):
            node = node.subcon
        return node


MESSAGES: Mapping[str, MessageSpec] = {
    spec.name: spec
    for spec in (
        MessageSpec("login", Direction.C2S, login),
        MessageSpec("ACC", Direction.S2C, acc),
        MessageSpec("NE", Direction.S2C, ne),
        MessageSpec("list", Direction.C2S, list_request),
        MessageSpec("list-reply", Direction.S2C, list_reply),
        MessageSpec("nick", Direction.C2S, nick_request),
        MessageSpec("NC", Direction.S2C, nc),
        MessageSpec("file", Direction.C2S, file_upload, streamed=True),
        MessageSpec("quit", Direction.C2S, quit_request),
        MessageSpec("msg", Direction.C2S, msg),
        MessageSpec("file-relay", Direction.S2C, file_relay, streamed=True),
        MessageSpec("msg-relay", Direction.S2C, msg_relay),
    )
}
