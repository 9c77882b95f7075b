"""Tests of chatserver.room: nicks, batched fan-out without echo, notices, the list. (The SendQ
is the transports' own: tests/test_server_transports.py.)"""

from __future__ import annotations

from pathlib import Path

import chatwire as cw
from chatserver.files import SpoolManager
from chatserver.room import Room


class FakeTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.files: list[tuple[bytes, object]] = []
        self.queued_bytes = 0
        self.queued_files = 0

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def write_file(self, head: bytes, spool) -> None:  # type: ignore[no-untyped-def]
        spool.acquire()
        self.files.append((head, spool))
        self.queued_files += 1
        self.writes.append(b"<file>")


class FakeMember:
    def __init__(self) -> None:
        self.nick = ""
        self.nick_bytes = b""
        self.transport = FakeTransport()


def room_with(*nicks: str, **settings: object) -> tuple[Room, list[FakeMember]]:
    room = Room(**settings)  # type: ignore[arg-type]
    members = []
    for nick in nicks:
        member = FakeMember()
        room.join(member, nick)  # type: ignore[arg-type]
        members.append(member)
    return room, members


def decode(data: bytes) -> list[cw.Event]:
    conn = cw.Connection(cw.Role.CLIENT)
    conn.send(cw.Login(nick="x"))
    conn.receive_data(b"ACC       " + data)
    return list(conn.events())[1:]


def test_a_pass_of_relays_is_one_write_per_member_without_its_own_frames() -> None:
    room, (ana, bob, cid) = room_with("ana", "bob", "cid")
    room.relay_text(ana, "1")  # type: ignore[arg-type]
    room.relay_text(bob, "2")  # type: ignore[arg-type]
    room.relay_text(ana, "3")  # type: ignore[arg-type]
    assert ana.transport.writes == []  # nothing until the pass ends
    room.flush()
    for member in (ana, bob, cid):
        assert len(member.transport.writes) == 1
    assert decode(ana.transport.writes[0]) == [cw.MessageRelay(sender="bob", text="2")]
    assert [e.text for e in decode(bob.transport.writes[0])] == ["1", "3"]  # type: ignore[attr-defined]
    assert [e.text for e in decode(cid.transport.writes[0])] == ["1", "2", "3"]  # type: ignore[attr-defined]
    room.flush()
    assert len(cid.transport.writes) == 1  # nothing new


def test_files_keep_their_place_in_the_order_and_are_released(tmp_path: Path) -> None:
    room, (ana, bob) = room_with("ana", "bob")
    spools = SpoolManager(str(tmp_path), limit=100)
    spool = spools.open(3)
    spool.write(b"abc")
    room.relay_text(ana, "before")  # type: ignore[arg-type]
    room.relay_file(ana, "f.txt", spool)  # type: ignore[arg-type]
    spool.release()
    room.relay_text(ana, "after")  # type: ignore[arg-type]
    room.flush()
    writes = bob.transport.writes
    assert len(writes) == 3 and writes[1] == b"<file>"
    head, _ = bob.transport.files[0]
    assert head == cw.encode(cw.FileRelay(sender="ana", name="f.txt", size=3))
    assert ana.transport.files == []
    assert spool.refs == 1  # only bob's queue holds it now
    spool.release()
    assert spools.open_spools == 0


def test_a_member_leaving_during_a_flush_does_not_break_it() -> None:
    # A write that fails closes the connection at once, and its session leaves the room while
    # the flush is iterating over the members (found by tests/test_attacks.py).
    room, (ana, bob, cid) = room_with("ana", "bob", "cid")

    def failing_write(data: bytes) -> None:
        room.leave(bob, "write error")  # type: ignore[arg-type]

    bob.transport.write = failing_write  # type: ignore[method-assign]
    room.relay_text(ana, "hi")  # type: ignore[arg-type]
    room.flush()
    assert decode(cid.transport.writes[0]) == [cw.MessageRelay(sender="ana", text="hi")]
    assert room.holder("bob") is None


def test_nicks_are_unique_caselessly_and_renames_keep_membership() -> None:
    room, (ana,) = room_with("Ana")
    assert room.holder("ANA") is ana and room.holder("bob") is None
    room.rename(ana, "bob")  # type: ignore[arg-type]
    assert room.holder("Ana") is None and room.holder("BOB") is ana
    assert room.nicks() == ("bob",)
    room.leave(ana, "quit")  # type: ignore[arg-type]
    assert len(room) == 0


def test_the_list_is_cut_to_list_max() -> None:
    room = Room()
    for i in range(120_000):
        member = FakeMember()
        room.join(member, f"n{i:07d}")  # type: ignore[arg-type]  # 8 bytes + separator
    nicks = room.nicks()
    assert len("\n".join(nicks).encode()) <= cw.LIST_MAX
    assert len(nicks) == (cw.LIST_MAX + 1) // 9


def test_notices_when_enabled() -> None:
    room, (ana,) = room_with("ana", notices=True)
    bob = FakeMember()
    room.join(bob, "bob")  # type: ignore[arg-type]
    room.rename(bob, "rob")  # type: ignore[arg-type]
    room.leave(bob, "quit")  # type: ignore[arg-type]
    room.flush()
    texts = [e.text for w in ana.transport.writes for e in decode(w)]  # type: ignore[attr-defined]
    assert texts == ["bob joined", "bob is now rob", "rob left (quit)"]
    assert bob.transport.writes == [] or all(
        "joined" not in e.text
        for w in bob.transport.writes
        for e in decode(w)  # type: ignore[attr-defined]
    )
