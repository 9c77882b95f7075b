"""Showing text from the network safely, and formatting the client's events for people and
programs.

Rules (spec 8.5): nicks, texts and file names come from other people, so nothing of theirs reaches
the terminal raw. Every character that could move the cursor, change colours, set the window
title, hide text or reorder it on screen is replaced by a visible escape (``\\x1b``, ``\\u202e``):
C0 and C1 control characters (C1 ``U+009B`` is a CSI on many terminals), DEL, line and paragraph
separators, and the bidirectional formatting characters of spec 2.8.5. Since ESC itself is
shown as the four characters ``\\x1b``, what follows it in an escape sequence is plain text. A
message text may keep its line feeds (spec 2.8.6 allows them) and tabs, expanded to spaces;
nicks and file names keep nothing.

How it works: `escape` and `escape_fragments` neutralise one string; `event_fragments` turns a
client event into styled fragments ``(style, text)``, the one description used both by the
terminal UI (which renders the styles) and by plain output (which joins the texts); `event_json`
gives the JSON line of ``--json`` (ASCII only, so even a C1 character is ``\\u009b`` there).
Colours per nick come from a fixed palette indexed by a CRC of the nick's key (spec 2.8.4), so a
nick has the same colour in every session and ``Ana`` and ``ana`` share one.
"""

from __future__ import annotations

import json
import time
import unicodedata
import zlib
from collections.abc import Iterable
from dataclasses import fields

from chatwire import nick_key

from .client import (
    ClientEvent,
    Disconnected,
    FileDiscarded,
    FileIncoming,
    FileProgress,
    FileSaved,
    FileSent,
    MessageReceived,
    NickAccepted,
    NickRefused,
    NoticeReceived,
    UserList,
)

__all__ = [
    "STALLED_AFTER",
    "Fragments",
    "escape",
    "escape_fragments",
    "event_fragments",
    "event_json",
    "human_rate",
    "human_size",
    "nick_color",
    "plain",
    "problem_json",
    "progress_text",
    "timestamp",
]

#: Styled text: ``(style, text)`` pairs, the shape of prompt_toolkit's FormattedText.
Fragments = list[tuple[str, str]]

# spec 2.8.5: the bidirectional formatting characters, which make `gpj.exe` look like `exe.jpg`.
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
# Categories shown as escapes: controls (C0, DEL, C1), line and paragraph separators (they
# break lines like a line feed), surrogates and private use (never text anyone typed).
_UNSAFE_CATEGORIES = frozenset(["Cc", "Zl", "Zp", "Cs", "Co"])
_TAB = "    "

# Readable on dark and light backgrounds; prompt_toolkit maps them to the terminal's depth.
_PALETTE = (
    "#d75f5f",
    "#5f87d7",
    "#5faf5f",
    "#af5fd7",
    "#d7875f",
    "#00afaf",
    "#d75f87",
    "#87af00",
    "#8787ff",
    "#af8700",
    "#5fafd7",
    "#ff5fd7",
)


def _unsafe(char: str) -> bool:
    return char in _BIDI or unicodedata.category(char) in _UNSAFE_CATEGORIES


def _visible(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def escape_fragments(text: str, style: str = "", *, multiline: bool = False) -> Fragments:
    """``text`` as fragments in ``style``, each unsafe character (see the module docstring) as a
    visible escape in ``style`` plus ``class:escape``.

    Args:
        text: untrusted text from the network.
        style: the style of the ordinary characters.
        multiline: keep line feeds and expand tabs (message texts, spec 2.8.6); otherwise they
            are escaped like any control character (nicks, file names).
    """
    if text.isprintable():  # the common case: nothing to neutralise
        return [(style, text)] if text else []
    out: Fragments = []
    run: list[str] = []
    escaped = f"{style} class:escape".strip()
    for char in text:
        if multiline and char == "\n":
            run.append("\n")
        elif multiline and char == "\t":
            run.append(_TAB)
        elif _unsafe(char):
            if run:
                out.append((style, "".join(run)))
                run = []
            out.append((escaped, _visible(char)))
        else:
            run.append(char)
    if run:
        out.append((style, "".join(run)))
    return out


def escape(text: str, *, multiline: bool = False) -> str:
    """``text`` with every unsafe character shown as a visible escape (spec 8.5).

    >>> escape("\\x1b[2Jhi")
    '\\\\x1b[2Jhi'
    """
    return plain(escape_fragments(text, multiline=multiline))


def plain(fragments: Iterable[tuple[str, str]]) -> str:
    """The text of ``fragments`` without styles."""
    return "".join(text for _, text in fragments)


def nick_color(nick: str) -> str:
    """The colour of ``nick`` (``#rrggbb``): the same for equal nicks (spec 2.8.4), every time."""
    key = nick_key(nick).encode("utf-8", "surrogatepass")
    return _PALETTE[zlib.crc32(key) % len(_PALETTE)]


def nick_fragments(nick: str) -> Fragments:
    """A nick from the network, escaped, bold, in its colour."""
    return escape_fragments(nick, f"bold fg:{nick_color(nick)}")


def name_fragments(name: str) -> Fragments:
    """A file name from the network, escaped and quoted (so a name of spaces shows)."""
    return [("class:file", '"'), *escape_fragments(name, "class:file"), ("class:file", '"')]


def human_size(size: float) -> str:
    """``1536`` -> ``'1.5 KiB'``; bytes below 1 KiB are counted exactly."""
    if size < 1024:
        return f"{int(size)} B"
    for unit in ("KiB", "MiB", "GiB"):
        size /= 1024
        if size < 1024:
            return f"{size:.1f} {unit}"
    return f"{size / 1024:.1f} TiB"


def human_rate(done: int, elapsed: float) -> str:
    """Bytes per second as text, or ``'-'`` before any time has passed."""
    if elapsed <= 0:
        return "-"
    return f"{human_size(done / elapsed)}/s"


#: Seconds without progress after which a transfer shows as stalled instead of with a rate.
STALLED_AFTER = 3.0


def progress_text(done: int, size: int, elapsed: float, *, idle: float = 0.0) -> str:
    """``'1.0 MiB of 4.0 MiB (25%), 2.0 MiB/s'``: the rate is the average since the start.

    Args:
        done: bytes so far; size: bytes in all.
        elapsed: seconds since the transfer started (up to now, for a live display).
        idle: seconds since ``done`` last grew; from `STALLED_AFTER` on, the rate gives way to
            ``'stalled for 5 s'`` (an average would fall slowly and hide that nothing moves).
    """
    percent = 100 if size == 0 else done * 100 // size
    head = f"{human_size(done)} of {human_size(size)} ({percent}%)"
    if idle >= STALLED_AFTER and done < size:
        return f"{head}, stalled for {int(idle)} s"
    return f"{head}, {human_rate(done, elapsed)}"


def timestamp(when: float | None = None) -> str:
    """The local time as ``HH:MM:SS``."""
    return time.strftime("%H:%M:%S", time.localtime(when))


def event_fragments(event: ClientEvent) -> Fragments:
    """How the terminal and plain output show ``event``, without a timestamp.

    Every string from the network goes through `escape_fragments`. Styles are prompt_toolkit
    style strings; `plain` drops them.
    """
    if isinstance(event, MessageReceived):
        # Continuation lines of a multi-line text are indented under the text.
        body = escape_fragments(event.text, multiline=True)
        body = [(style, text.replace("\n", "\n    ")) for style, text in body]
        return [("", "<"), *nick_fragments(event.sender), ("", "> "), *body]
    if isinstance(event, NoticeReceived):
        # spec 3.1.8: notices are shown apart from users' messages.
        body = escape_fragments(event.text, "class:notice", multiline=True)
        return [("class:notice", "-- "), *body]
    if isinstance(event, UserList):
        out: Fragments = [("class:info", f"* {len(event.nicks)} online: ")]
        for index, nick in enumerate(event.nicks):
            if index:
                out.append(("class:info", ", "))
            out.extend(nick_fragments(nick))
        return out
    if isinstance(event, NickAccepted):
        return [("class:info", "* you are now "), *nick_fragments(event.new)]
    if isinstance(event, NickRefused):
        return [
            ("class:error", "* nick "),
            *nick_fragments(event.nick),
            ("class:error", " refused: it is taken or not a valid nick"),
        ]
    if isinstance(event, FileIncoming):
        return [
            ("class:info", "* "),
            *nick_fragments(event.sender),
            ("class:info", " is sending "),
            *name_fragments(event.name),
            ("class:info", f" ({human_size(event.size)})"),
        ]
    if isinstance(event, FileProgress):
        arrow = "received" if event.direction == "in" else "sent"
        return [
            ("class:info", f"* {arrow} "),
            *name_fragments(event.name),
            ("class:info", ": " + progress_text(event.done, event.size, event.elapsed)),
        ]
    if isinstance(event, FileSaved):
        return [
            ("class:info", "* saved "),
            *name_fragments(event.name),
            ("class:info", " from "),
            *nick_fragments(event.sender),
            ("class:info", f" ({human_size(event.size)}) as "),
            *escape_fragments(event.path, "class:file"),
        ]
    if isinstance(event, FileDiscarded):
        return [
            ("class:error", "* file "),
            *name_fragments(event.name),
            ("class:error", " from "),
            *nick_fragments(event.sender),
            ("class:error", " not saved: "),
            *escape_fragments(event.reason, "class:error"),
        ]
    if isinstance(event, FileSent):
        return [
            ("class:info", "* sent "),
            *name_fragments(event.name),
            ("class:info", f" ({human_size(event.size)})"),
        ]
    if isinstance(event, Disconnected):
        style = "class:info" if event.expected else "class:error"
        return [(style, "* disconnected: "), *escape_fragments(event.reason, style)]
    raise TypeError(f"not a client event: {event!r}")  # pragma: no cover - exhaustive above


#: The ``"event"`` member of each JSON line.
EVENT_NAMES: dict[type[ClientEvent], str] = {
    MessageReceived: "message",
    NoticeReceived: "notice",
    UserList: "users",
    NickAccepted: "nick",
    NickRefused: "nick-refused",
    FileIncoming: "file-incoming",
    FileProgress: "file-progress",
    FileSaved: "file-saved",
    FileDiscarded: "file-discarded",
    FileSent: "file-sent",
    Disconnected: "disconnected",
}


def event_json(event: ClientEvent, when: float | None = None) -> str:
    """One JSON line for ``event``: ``{"event": name, "time": epoch seconds, ...fields}``.

    The text is pure ASCII (``ensure_ascii``): programs get every character exactly, and a
    terminal showing the line sees no control character.
    """
    record: dict[str, object] = {
        "event": EVENT_NAMES[type(event)],
        "time": round(time.time() if when is None else when, 3),
    }
    for field in fields(event):
        value = getattr(event, field.name)
        record[field.name] = list(value) if isinstance(value, tuple) else value
    return json.dumps(record, ensure_ascii=True)


def problem_json(message: str, when: float | None = None) -> str:
    """The JSON line of a local problem in scripted mode (a file that cannot be sent, a line
    that is not UTF-8, an unknown command, a failed connection), also said on stderr:
    ``{"event": "error", "time": epoch seconds, "message": text}``."""
    record = {"event": "error", "time": round(time.time() if when is None else when, 3)}
    return json.dumps({**record, "message": message}, ensure_ascii=True)
