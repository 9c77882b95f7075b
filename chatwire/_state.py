"""The connection state machine of spec 4.3, as one table.

Rules of this module (after h11's ``_state.py``): the table *is* the spec's table 4.3, row for
row, and ``tests/test_spec_tables.py`` checks that they are equal. Both ends of a connection run
the same machine, feeding it the frames they send and the frames they receive; a frame without a
row for the current state and its direction, or whose condition fails, is illegal. No bytes
here: frames are named by their spec message name (``"msg-relay"``).

Requests that expect a reply (``list``, ``nick``) queue up in ``pending``; replies pop them in
order (spec 5.2).

One rule depends on the role and so is not a row: the ``QUIT`` rows are frames the server sent
before it read ``quit``, which only the client receives. A server starts no frame once it has
read ``quit`` (`SERVER_SILENT`, spec 3.1.5 and the note under table 4.3).
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from ._wire import Direction

__all__ = ["SERVER_SILENT", "TRANSITIONS", "ConnectionState", "State", "Transition"]


class State(enum.Enum):
    """The states of spec 4.3."""

    LOGIN = "LOGIN"  # nothing sent yet
    AWAIT_ACC = "AWAIT_ACC"  # login sent, no answer yet
    ACTIVE = "ACTIVE"  # logged in
    QUIT = "QUIT"  # the client has sent quit
    CLOSED = "CLOSED"  # over


@dataclass(frozen=True, slots=True)
class Transition:
    """One row of table 4.3: the condition, the effect on ``pending``, the next state."""

    next: State
    requires: str | None = None  # "pending starts with <requires>"
    push: str | None = None  # "push <push>"
    pop: bool = False  # "pop"


_C2S, _S2C = Direction.C2S, Direction.S2C
_L, _W, _A, _Q, _X = State.LOGIN, State.AWAIT_ACC, State.ACTIVE, State.QUIT, State.CLOSED

# spec 4.3, in the spec's row order: (state, message, direction) -> transition.
TRANSITIONS: Mapping[tuple[State, str, Direction], Transition] = {
    (_L, "login", _C2S): Transition(_W),
    (_W, "ACC", _S2C): Transition(_A),
    (_W, "NE", _S2C): Transition(_X),
    (_A, "list", _C2S): Transition(_A, push="list"),
    (_A, "nick", _C2S): Transition(_A, push="nick"),
    (_A, "msg", _C2S): Transition(_A),
    (_A, "file", _C2S): Transition(_A),
    (_A, "quit", _C2S): Transition(_Q),
    (_A, "list-reply", _S2C): Transition(_A, requires="list", pop=True),
    (_A, "NC", _S2C): Transition(_A, requires="nick", pop=True),
    (_A, "NE", _S2C): Transition(_A, requires="nick", pop=True),
    (_A, "msg-relay", _S2C): Transition(_A),
    (_A, "file-relay", _S2C): Transition(_A),
    (_Q, "list-reply", _S2C): Transition(_Q, requires="list", pop=True),
    (_Q, "NC", _S2C): Transition(_Q, requires="nick", pop=True),
    (_Q, "NE", _S2C): Transition(_Q, requires="nick", pop=True),
    (_Q, "msg-relay", _S2C): Transition(_Q),
    (_Q, "file-relay", _S2C): Transition(_Q),
}

# spec 3.1.5: "The server MUST NOT start sending a frame after it has read `quit`". The QUIT rows
# above are for the client, which may still receive frames the server sent before that; for a
# server no frame is legal in these states in either direction (note under table 4.3).
SERVER_SILENT: Final = frozenset({State.QUIT})


class ConnectionState:
    """The state and pending requests of one connection (spec 4.3)."""

    __slots__ = ("pending", "state")

    def __init__(self) -> None:
        self.state = State.LOGIN
        self.pending: deque[str] = deque()

    def problem(self, message: str, direction: Direction) -> str | None:
        """Why ``message`` cannot go ``direction`` now, or ``None`` if it can."""
        row = TRANSITIONS.get((self.state, message, direction))
        if row is None:
            return f"{message!r} ({direction.value}) is not allowed in state {self.state.value}"
        if row.requires is not None and (not self.pending or self.pending[0] != row.requires):
            waiting = self.pending[0] if self.pending else "nothing"
            return (
                f"{message!r} answers a {row.requires!r} request, "
                f"but the oldest pending request is {waiting}"
            )
        return None

    def apply(self, message: str, direction: Direction) -> None:
        """Take the transition for ``message``; `problem` must have returned ``None``."""
        row = TRANSITIONS[(self.state, message, direction)]
        if row.pop:
            self.pending.popleft()
        if row.push is not None:
            self.pending.append(row.push)
        self.state = row.next

    def close(self) -> None:
        """End of stream, or an error: every state goes to CLOSED (spec 6.5)."""
        self.state = State.CLOSED
