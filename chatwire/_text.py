"""The payload rules of spec 2.8 that are not framing: valid nicks, nick equality, file names,
and cutting long text.

Pure functions on ``str``; no I/O. Framing code (the decoder, the event classes) and the
reference server call them so that a rule is written once.
"""

from __future__ import annotations

import unicodedata

from ._errors import LocalProtocolError
from ._limits import NAME_MAX, NICK_MAX, TEXT_MAX

__all__ = [
    "file_name_error",
    "is_valid_nick",
    "nick_error",
    "nick_key",
    "split_text",
    "utf8_len",
]

# spec 2.8.3: letters (L*), marks (M*), numbers (N*), '-' and '_'.
_NICK_CATEGORIES = frozenset(["L", "M", "N"])
_NICK_EXTRA = frozenset("-_")

# spec 2.8.5: control characters (C0, DEL, C1) and bidirectional formatting characters.
_NAME_FORBIDDEN = frozenset(
    [chr(c) for c in range(0x00, 0x20)]
    + [chr(c) for c in range(0x7F, 0xA0)]
    + ["/", "\\", "\u061c", "\u200e", "\u200f"]
    + [chr(c) for c in range(0x202A, 0x202F)]
    + [chr(c) for c in range(0x2066, 0x206A)]
)


def utf8_len(text: str) -> int:
    """Number of bytes of ``text`` in UTF-8 (spec 2.8.1). ASCII text costs no encoding."""
    if text.isascii():
        return len(text)
    return len(text.encode("utf-8"))


def nick_error(nick: str) -> str | None:
    """Why ``nick`` is not a valid nick (spec 2.8.3), or ``None`` if it is valid."""
    if not nick:
        return "a nick cannot be empty"
    try:
        size = len(nick.encode("utf-8"))
    except UnicodeEncodeError:
        return "a nick must be encodable in UTF-8 (no lone surrogates)"
    if size > NICK_MAX:
        return f"a nick has at most {NICK_MAX} bytes in UTF-8, this one has {size}"
    for char in nick:
        if char in _NICK_EXTRA or unicodedata.category(char)[0] in _NICK_CATEGORIES:
            continue
        return f"a nick may hold only letters, digits, marks, '-' and '_', not {char!r}"
    return None


def is_valid_nick(nick: str) -> bool:
    """True if ``nick`` is a valid nick (spec 2.8.3)."""
    return nick_error(nick) is None


def nick_key(nick: str) -> str:
    """The key under which nicks are unique (spec 2.8.4): NFKC(casefold(NFKC(nick))).

    Two nicks are equal when their keys are equal: ``nick_key("Ana") == nick_key("ANA")``.
    """
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", nick).casefold())


def file_name_error(name: str) -> str | None:
    """Why ``name`` is not a valid file name (spec 2.8.5), or ``None`` if it is valid."""
    if not name:
        return "a file name cannot be empty"
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        return "a file name must be encodable in UTF-8 (no lone surrogates)"
    if size > NAME_MAX:
        return f"a file name has at most {NAME_MAX} bytes in UTF-8, this one has {size}"
    if name in (".", ".."):
        return f"a file name cannot be {name!r}"
    for char in name:
        if char in _NAME_FORBIDDEN:
            return f"a file name cannot contain {char!r}"
    return None


def split_text(text: str, limit: int = TEXT_MAX) -> list[str]:
    """Cut ``text`` into pieces of at most ``limit`` UTF-8 bytes each (spec 3.1.6).

    Cuts fall only between characters; within a piece that has to be cut, the cut goes after its
    last line feed or space, whichever comes later (spec 3.1.6: "the last line feed or space of
    a piece"), else at the last character boundary within the limit. Joining the pieces gives
    back ``text``. A text within the limit (the empty text included) is one piece.

    Raises:
        ValueError: if ``limit`` is below 4, the longest UTF-8 character.
        LocalProtocolError: if ``text`` has no UTF-8 form (a lone surrogate, as
            ``surrogateescape`` decoding leaves for undecodable input; spec 2.8.2).
    """
    if limit < 4:
        raise ValueError("limit must be at least 4 bytes, the longest UTF-8 character")
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise LocalProtocolError(
            f"text is not encodable in UTF-8: {text[exc.start : exc.end]!r} at character "
            f"{exc.start}",
            section="2.8.2",
        ) from exc
    if len(data) <= limit:
        return [text]
    pieces: list[str] = []
    start = 0
    while len(data) - start > limit:
        end = start + limit
        # Step back off UTF-8 continuation bytes (0b10xxxxxx) so the cut is between characters.
        while data[end] & 0xC0 == 0x80:
            end -= 1
        # spec 3.1.6: after the last line feed or space, whichever is later; an earlier line
        # feed is not preferred (the pieces stay as long as they can be).
        cut = max(data.rfind(b"\n", start, end), data.rfind(b" ", start, end))
        if cut >= 0:
            end = cut + 1
        pieces.append(data[start:end].decode("utf-8"))
        start = end
    pieces.append(data[start:].decode("utf-8"))
    return pieces
