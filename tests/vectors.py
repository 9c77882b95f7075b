"""Loading spec/vectors/*.json and bringing a Connection to a vector's starting state."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import chatwire as cw

VECTORS = Path(__file__).resolve().parent.parent / "spec" / "vectors"


def load(name: str) -> Any:
    with (VECTORS / name).open(encoding="utf-8") as f:
        return json.load(f)


def receiver(vector: dict[str, Any], parser: str = "fast") -> cw.Connection:
    """A connection in the vector's receiving role, state and pending queue (README section 6)."""
    state, pending = vector["state"], vector["pending"]
    if vector["direction"] == "C→S":
        conn = cw.Connection(cw.Role.SERVER, parser=parser)  # type: ignore[arg-type]
        if state in ("ACTIVE", "QUIT"):
            conn.receive_data(b"3         ana")
            assert conn.next_event() == cw.Login(nick="ana")
            conn.send(cw.Accepted())
        if state == "QUIT":
            conn.receive_data(b"quit      ")
            assert conn.next_event() == cw.Quit()
        assert not pending
    else:
        conn = cw.Connection(cw.Role.CLIENT, parser=parser)  # type: ignore[arg-type]
        if state != "LOGIN":
            conn.send(cw.Login(nick="ana"))
        if state in ("ACTIVE", "QUIT"):
            conn.receive_data(b"ACC       ")
            assert conn.next_event() == cw.Accepted()
            for request in pending:
                conn.send(cw.ListRequest() if request == "list" else cw.NickRequest(nick="bob"))
        if state == "QUIT":
            conn.send(cw.Quit())
    assert conn.state.value == state
    return conn


def expected_events(vector: dict[str, Any]) -> list[object]:
    """The events a frames vector decodes to; file data as one bytes object."""
    f = vector["fields"]
    message = vector["message"]
    simple = {
        "ACC": cw.Accepted(),
        "NE": cw.Refused(),
        "NC": cw.NickChanged(),
        "list": cw.ListRequest(),
        "quit": cw.Quit(),
    }
    if message in simple:
        return [simple[message]]
    if message == "login":
        return [cw.Login(nick=f["nick"])]
    if message == "nick":
        return [cw.NickRequest(nick=f["nick"])]
    if message == "msg":
        return [cw.Message(text=f["text"])]
    if message == "msg-relay":
        if vector.get("notice"):
            return [cw.Notice(text=f["text"])]
        return [cw.MessageRelay(sender=f["nick"], text=f["text"])]
    if message == "list-reply":
        return [cw.ListReply(nicks=tuple(f["user_list"]))]
    if message == "file":
        start: cw.Event = cw.File(name=f["name"], size=f["file_size"])
    else:
        start = cw.FileRelay(sender=f["nick"], name=f["name"], size=f["file_size"])
    if vector.get("head_only"):
        return [start]
    data = bytes.fromhex(f["data_hex"])
    return [start, *([data] if data else []), cw.FileEnd()]
