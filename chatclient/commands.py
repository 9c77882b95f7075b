"""The vocabulary of the ``chatclient`` program: what a typed line means (the paper's commands,
spec 8.6, or text to send), and the program's exit codes.

Used by the terminal UI and by the scripted mode, so both understand the same lines. Pure: no
I/O. Rules:

- A line that does not start with ``/`` is text to send; an empty line sends nothing.
- A line that starts with ``//`` is text starting with ``/``: one ``/`` is dropped
  (``//shrug`` sends ``/shrug``), as in IRC clients.
- Command names are case-insensitive (``/LIST``, ``/sendfile`` and ``/sendFile`` are one); their
  arguments are kept as typed. ``/clean`` (the paper's table) and ``/clear`` (its text) are one.
- ``/nick NEW`` takes one word; ``/sendFile PATH`` takes the rest of the line as the path (so
  names with spaces need no quoting), with one pair of surrounding quotes removed if present.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "COMMAND_NAMES",
    "HELP",
    "ChangeNick",
    "Clear",
    "Command",
    "ExitCode",
    "Help",
    "ListUsers",
    "Problem",
    "Quit",
    "Say",
    "SendFile",
    "parse",
]


class ExitCode(enum.IntEnum):
    """How ``chatclient`` ends (documented in ``chatclient --help``)."""

    OK = 0  #: the user quit, or the script ran to its end
    ERROR = 1  #: could not connect, the server closed, the network failed, a protocol error
    USAGE = 2  #: bad arguments
    NICK_REFUSED = 3  #: the server refused the nick (scripted mode; interactive asks again)
    FILE_ERROR = 4  #: a file to send could not be read or its name cannot be sent
    TEXT_ERROR = 5  #: a text to send was not valid UTF-8 (scripted mode; the rest was sent)
    #: Ctrl-C in scripted mode or at the nick prompt, or a second Ctrl-C while the terminal
    #: client waits for files to be sent before quitting (a first one quits with 0)
    INTERRUPTED = 130


@dataclass(frozen=True, slots=True, kw_only=True)
class Say:
    """Send ``text`` to everyone."""

    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ListUsers:
    """``/list``: ask who is logged in."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Help:
    """``/help``: show the commands (local)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Clear:
    """``/clear`` or ``/clean``: clear the screen (local)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Quit:
    """``/quit``: leave."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ChangeNick:
    """``/nick NEW``."""

    nick: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SendFile:
    """``/sendFile PATH`` (the path as typed; ``~`` not yet expanded)."""

    path: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Problem:
    """A line that is not a usable command; ``message`` says why and what to do."""

    message: str


Command = Say | ListUsers | Help | Clear | Quit | ChangeNick | SendFile | Problem

#: The commands as shown and completed (the paper's spelling).
COMMAND_NAMES = ("/list", "/help", "/clear", "/clean", "/quit", "/nick", "/sendFile")

HELP = """\
Commands (names in any case):
  /list              who is in the chat
  /nick NEW          change your nick
  /sendFile PATH     send a file to everyone (Tab completes paths)
  /clear, /clean     clear the screen
  /help              this help
  /quit              leave (Ctrl-D, or Ctrl-C on an empty line, too)
Anything else is sent as a message; start a line with // to send one that starts with /.
Ctrl-C clears the line being typed."""

_SIMPLE: dict[str, Command] = {
    "/list": ListUsers(),
    "/help": Help(),
    "/clear": Clear(),
    "/clean": Clear(),
    "/quit": Quit(),
}


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    return text


def parse(line: str) -> Command | None:
    """The meaning of ``line`` (without its line end), or None for an empty line."""
    if not line.startswith("/"):
        return Say(text=line) if line else None
    if line.startswith("//"):
        return Say(text=line[1:])
    name, _, rest = line.partition(" ")
    name = name.lower()
    argument = rest.strip()
    simple = _SIMPLE.get(name)
    if simple is not None:
        return simple
    if name == "/nick":
        if not argument:
            return Problem(message="usage: /nick NEW_NICK")
        if " " in argument:
            return Problem(message="a nick is one word: /nick NEW_NICK")
        return ChangeNick(nick=argument)
    if name == "/sendfile":
        path = _unquote(argument)
        if not path:
            return Problem(message="usage: /sendFile PATH")
        return SendFile(path=path)
    return Problem(
        message=f"unknown command {name}; /help lists the commands, and a line starting "
        "with // is sent as text"
    )
