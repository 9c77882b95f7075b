"""Showing frames to people: byte renditions, event descriptions, and what is wrong with a header.

Shared by the conformance kit's reports and the trace proxy (`chatwire.proxy`). No I/O.

Rules:

- Bytes are shown as in ``spec/vectors`` (the ``text`` field): each byte 0x20-0x7e as that ASCII
  character, every other byte as ``\\xNN``. So a NUL-padded header reads ``ACC\\x00\\x00...`` and
  cannot be mistaken for ``ACC`` followed by spaces: the kit reads raw bytes precisely so that
  the report can show what the decoder refused.
- Long byte strings are cut, saying how many bytes were left out; file data is never dumped,
  only counted (and hashed where a comparison needs it).
- `explain_header` says in words what makes a 10-byte header wrong (NUL padding, right
  alignment, a leading zero...), so a failure reads "padded with NUL bytes" rather than only
  "malformed (spec 2.3)".
- `broken_requirement` names the MUST sentence a refused frame breaks, by the section the
  decoder cites: a NUL-padded relay fails spec 2.2 ("A sender MUST produce exactly this
  form."), whatever the case that received it was checking.
"""

from __future__ import annotations

import re

import chatwire as cw

from .registry import Requirement

__all__ = [
    "EXACT_FORM",
    "broken_requirement",
    "canonical_head",
    "describe",
    "explain_header",
    "message_name",
    "render",
]

#: Spec 2.2: the one byte form of every header.
EXACT_FORM = Requirement("2.2", "A sender MUST produce exactly this form.")
_RECEIVER_CHECKS = Requirement(
    "2.3",
    "A receiver MUST check every header against the grammar, the table and its state, and MUST "
    "treat any other header as malformed (section 6).",
)
_MALFORMED_PAYLOAD = Requirement(
    "6.1",
    "A receiver MUST treat as malformed: ... a file name that breaks 2.8.5, a `user_list` that "
    "breaks 2.8.7, a `file-relay` with an empty sender;",
)
#: The decoder's section -> the MUST sentence a frame refused for it breaks: the sender's duty
#: where the spec states one in a sentence (the peer sent the frame), else the receiver's rule.
#: Each is quoted verbatim from its section; tests/test_conformance_registry.py checks them.
WIRE_REQUIREMENTS: dict[str, Requirement] = {
    "2.3": EXACT_FORM,  # the header's form: padding, separators, digits
    # a header the table does not allow in this direction
    "2.6": Requirement(
        "2.6", "A peer MUST NOT send a frame that this table does not list for its direction."
    ),
    # a frame not allowed in the state: an unasked reply, an early relay
    "4.3": Requirement("4.3", "A peer MUST NOT send an illegal frame."),
    "2.7": Requirement("2.7", "A sender MUST NOT send a size outside its range."),
    "2.8.2": Requirement("2.8.2", "A sender MUST send each of these parts as valid UTF-8."),
    "2.8.5": _MALFORMED_PAYLOAD,
    "2.8.7": Requirement("2.8.7", "A server MUST send every `user_list` in this form."),
    "3.1.7.1": Requirement("3.1.7.1", "`nick_size` MUST NOT be 0: a file always has a sender."),
    "6.5": Requirement(
        "6.1",
        "A receiver MUST treat as malformed: ... a stream that ends inside a frame, except in "
        "state `QUIT` (6.5).",
    ),
}


def broken_requirement(section: str | None) -> Requirement:
    """The MUST requirement broken by a frame the decoder refused citing ``section``."""
    return WIRE_REQUIREMENTS.get(section or "", _RECEIVER_CHECKS)


_CODES = ("ACC", "NE", "NC", "list", "nick", "file", "msg", "quit")
_TOKEN = re.compile(rb"[^\s\x00]+")


def render(data: bytes | bytearray | memoryview, limit: int = 72) -> str:
    """``data`` as readable text, vector style (see the module docstring), cut after ``limit``
    bytes with a count of the rest."""
    raw = bytes(data)
    shown = raw[:limit]
    text = "".join(chr(b) if 0x20 <= b <= 0x7E else f"\\x{b:02x}" for b in shown)
    if len(raw) > limit:
        text += f"...(+{len(raw) - limit} bytes)"
    return text


def message_name(event: cw.Event) -> str:
    """The spec 2.6 name of the frame ``event`` stands for (``notice`` for a notice)."""
    names: dict[type[cw.Event], str] = {
        cw.Login: "login",
        cw.Accepted: "ACC",
        cw.Refused: "NE",
        cw.ListRequest: "list",
        cw.ListReply: "list-reply",
        cw.NickRequest: "nick",
        cw.NickChanged: "NC",
        cw.File: "file",
        cw.Quit: "quit",
        cw.Message: "msg",
        cw.FileRelay: "file-relay",
        cw.MessageRelay: "msg-relay",
        cw.Notice: "notice",
        cw.FileData: "file data",
        cw.FileEnd: "end of file",
        cw.ConnectionClosed: "end of stream",
    }
    return names.get(type(event), type(event).__name__)


def _short(text: str, limit: int = 48) -> str:
    shown = repr(text[:limit])
    return shown + ("..." if len(text) > limit else "")


def describe(event: cw.Event) -> str:
    """One line for a person: the message name and its fields."""
    if isinstance(event, cw.Login | cw.NickRequest):
        return f"{message_name(event)} {event.nick!r}"
    if isinstance(event, cw.Message):
        return f"msg {_short(event.text)}"
    if isinstance(event, cw.MessageRelay):
        return f"msg-relay from {event.sender!r}: {_short(event.text)}"
    if isinstance(event, cw.Notice):
        return f"notice {_short(event.text)}"
    if isinstance(event, cw.ListReply):
        return f"list-reply {list(event.nicks)!r}"
    if isinstance(event, cw.File):
        return f"file {event.name!r} ({event.size} bytes)"
    if isinstance(event, cw.FileRelay):
        return f"file-relay from {event.sender!r}: {event.name!r} ({event.size} bytes)"
    if isinstance(event, cw.FileData):
        size = event.data.nbytes if isinstance(event.data, memoryview) else len(event.data)
        return f"{size} bytes of file data"
    return message_name(event)


def canonical_head(event: cw.Event) -> bytes | None:
    """The one correct byte form of ``event``'s frame (its head for a file), or ``None`` for
    events that are not frames (file data, end of file, end of stream). Spec 2.2: "There is
    exactly one correct header for every frame"."""
    try:
        return cw.encode(event)
    except cw.LocalProtocolError:
        return None


def explain_header(raw: bytes | bytearray | memoryview) -> str:
    """What is wrong with the header ``raw`` (its first 10 bytes), in words (spec 2.2, 2.3).

    Returns an empty string when nothing is recognisably wrong with the header's form (the
    problem is then elsewhere: its place in the table, the state, a size range or a payload).
    """
    header = bytes(raw[: cw.HEADER_SIZE])
    problems: list[str] = []
    if len(header) < cw.HEADER_SIZE:
        return f"only {len(header)} of the 10 header bytes arrived"
    if b"\x00" in header:
        problems.append("padded or separated with NUL bytes (0x00); padding is spaces (0x20)")
    if header[:1] == b" " and header.strip(b" "):
        problems.append("right-aligned or starting with a space; fields start at the first byte")
    if b"\t" in header or b"\r" in header or b"\n" in header:
        problems.append("holds a tab, CR or LF; fields are separated and padded by spaces only")
    stripped = header.strip(b" \x00")
    if b"  " in stripped:
        problems.append("two spaces between fields; exactly one separates fields")
    if any(b >= 0x80 for b in header):
        problems.append("holds non-ASCII bytes; a header is ASCII")
    tokens = _TOKEN.findall(header)
    for token in tokens:
        if token[:1] in (b"+", b"-") and token[1:].isdigit():
            problems.append(f"size {token.decode('ascii')!r} has a sign")
        elif token.isdigit() and len(token) > 1 and token.startswith(b"0"):
            problems.append(f"size {token.decode('ascii')!r} has a leading zero")
    if tokens and not tokens[0].isdigit():
        code = tokens[0].decode("ascii", "replace")
        if code not in _CODES:
            near = [c for c in _CODES if c.lower() == code.lower()]
            if near:
                problems.append(f"code {code!r} is spelled {near[0]!r} (codes are case-sensitive)")
            elif not code.startswith(("+", "-")):
                problems.append(f"unknown code {code!r}")
    if not header.strip(b" "):
        problems.append("all spaces: a header holds at least one field")
    return "; ".join(problems)
