"""Tests of chatwire._state: the transition table of spec 4.3."""

from __future__ import annotations

from chatwire._state import SERVER_SILENT, TRANSITIONS, ConnectionState, State
from chatwire._wire import MESSAGES, Direction


def test_every_row_names_a_message_in_its_direction() -> None:
    for (_state, message, direction), row in TRANSITIONS.items():
        assert MESSAGES[message].direction is direction
        assert not (row.pop and row.requires is None)


def test_requests_push_and_replies_pop_in_order() -> None:
    cs = ConnectionState()
    for message, direction in [
        ("login", Direction.C2S),
        ("ACC", Direction.S2C),
        ("list", Direction.C2S),
        ("nick", Direction.C2S),
    ]:
        assert cs.problem(message, direction) is None
        cs.apply(message, direction)
    assert list(cs.pending) == ["list", "nick"]
    assert "oldest pending request is list" in cs.problem("NC", Direction.S2C)  # type: ignore[operator]
    cs.apply("list-reply", Direction.S2C)
    cs.apply("NE", Direction.S2C)
    assert cs.state is State.ACTIVE and not cs.pending
    assert "nothing" in cs.problem("NE", Direction.S2C)  # type: ignore[operator]


def test_ne_at_login_closes_and_quit_leaves_only_frames_the_client_receives() -> None:
    cs = ConnectionState()
    cs.apply("login", Direction.C2S)
    cs.apply("NE", Direction.S2C)
    assert cs.state is State.CLOSED
    assert cs.problem("msg-relay", Direction.S2C) is not None
    cs = ConnectionState()
    for message, direction in [
        ("login", Direction.C2S),
        ("ACC", Direction.S2C),
        ("quit", Direction.C2S),
    ]:
        cs.apply(message, direction)
    assert cs.state is State.QUIT
    assert cs.problem("msg", Direction.C2S) is not None
    # The client may still receive what the server sent before it read quit (spec 3.1.5); a
    # server-role connection never sends it (SERVER_SILENT, tested in test_connection.py).
    assert cs.problem("msg-relay", Direction.S2C) is None
    cs.close()
    assert cs.state is State.CLOSED


def test_the_server_is_silent_exactly_in_quit() -> None:
    # spec 3.1.5 and the note under table 4.3: a server starts no frame once it has read quit.
    assert frozenset({State.QUIT}) == SERVER_SILENT
    # Every S->C row of QUIT is one of those the client receives; none leads out of QUIT.
    rows = [(m, row) for (s, m, d), row in TRANSITIONS.items() if s is State.QUIT]
    assert rows and all(MESSAGES[m].direction is Direction.S2C for m, _ in rows)
    assert all(row.next is State.QUIT for _, row in rows)
