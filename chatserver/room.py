"""The room: who is logged in under which nick, and fan-out of relays (spec 3.1.7, 5.3).

No I/O of its own: it writes to members' transports through the small `Member` interface.

Fan-out is batched. Relays accepted during one reactor pass are encoded once each and collected
in order; at the end of the pass (`flush`, a reactor pass hook) every member gets one write of
everything it is owed, its own frames left out (no echo). The batch keeps the server's single
acceptance order (spec 5.3): every member sees the same sequence minus its own frames. Before
any reply is written to a member, the session calls `flush` so that replies and relays also keep
the order in which the server did things.

The room does not police what members are sent: every transport bounds its own write queue
(spec 7.3, "SendQ exceeded", `chatserver.transports`), for relays and replies alike, and closes
itself when the bound is passed; so one slow reader never holds up anyone else.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Protocol

from chatwire import LIST_MAX, TEXT_MAX, FileRelay, Notice, encode, nick_key, split_text

from .files import Spool

__all__ = ["Member", "Room"]

log = logging.getLogger("chatserver")


class MemberTransport(Protocol):
    def write(self, data: bytes | bytearray | memoryview) -> None: ...
    def write_file(self, head: bytes, spool: Spool) -> None: ...


class Member(Protocol):
    """What the room needs of a logged-in session."""

    nick: str
    nick_bytes: bytes

    @property
    def transport(self) -> MemberTransport: ...


class _FileRelayItem:
    __slots__ = ("head", "spool")

    def __init__(self, head: bytes, spool: Spool) -> None:
        self.head = head
        self.spool = spool


_Item = bytes | _FileRelayItem


class Room:
    """The one room of spec 1.2."""

    def __init__(self, *, notices: bool = False) -> None:
        self.notices = notices
        self._members: dict[str, Member] = {}  # nick key (spec 2.8.4) -> member, in join order
        self._batch: list[tuple[Member | None, _Item]] = []
        self._batch_has_files = False
        self._relay_headers: dict[tuple[int, int], bytes] = {}
        self.relayed_messages = 0
        self.relayed_files = 0

    # --- Membership -----------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._members)

    def __iter__(self) -> Iterator[Member]:
        return iter(list(self._members.values()))

    def holder(self, nick: str) -> Member | None:
        """The member whose nick equals ``nick`` (spec 2.8.4), if any."""
        return self._members.get(nick_key(nick))

    def join(self, member: Member, nick: str) -> None:
        """Log ``member`` in as ``nick`` (the caller checked it is valid and free)."""
        self.flush()  # relays accepted before this login are not for it
        member.nick = nick
        member.nick_bytes = nick.encode("utf-8")
        self._members[nick_key(nick)] = member
        if self.notices:
            self.notice(f"{nick} joined", exclude=member)

    def leave(self, member: Member, why: str) -> None:
        """Log ``member`` out; nothing more is relayed to it."""
        key = nick_key(member.nick)
        if self._members.get(key) is member:
            del self._members[key]
            if self.notices:
                self.notice(f"{member.nick} left ({why})")

    def rename(self, member: Member, nick: str) -> None:
        """Give ``member`` the nick ``nick`` (the caller checked it is valid and free)."""
        self.flush()  # relays accepted before the change keep the old nick
        old = member.nick
        del self._members[nick_key(old)]
        member.nick = nick
        member.nick_bytes = nick.encode("utf-8")
        self._members[nick_key(nick)] = member
        if self.notices and old != nick:
            self.notice(f"{old} is now {nick}", exclude=member)

    def nicks(self) -> tuple[str, ...]:
        """The user list of spec 3.1.2, cut to LIST_MAX bytes if it must be."""
        nicks = tuple(member.nick for member in self._members.values())
        size = sum(len(m.nick_bytes) + 1 for m in self._members.values()) - 1
        if size <= LIST_MAX:
            return nicks
        kept: list[str] = []
        size = -1
        for nick in nicks:
            size += len(nick.encode("utf-8")) + 1
            if size > LIST_MAX:
                break
            kept.append(nick)
        return tuple(kept)

    # --- Relays ---------------------------------------------------------------------------------

    def relay_text(self, sender: Member, text: str) -> None:
        """Relay a ``msg`` from ``sender`` to everyone else (spec 3.1.7.2)."""
        data = text.encode("utf-8")
        sizes = (len(sender.nick_bytes), len(data))
        header = self._relay_headers.get(sizes)
        if header is None:
            header = (b"msg %d %d" % sizes).ljust(10)
            if len(self._relay_headers) < 65536:
                self._relay_headers[sizes] = header
        self._batch.append((sender, header + sender.nick_bytes + data))
        self.relayed_messages += 1

    def relay_file(self, sender: Member, name: str, spool: Spool) -> None:
        """Relay a complete file from ``sender`` to everyone else (spec 3.1.7.1)."""
        head = encode(FileRelay(sender=sender.nick, name=name, size=spool.size))
        spool.acquire()  # the batch's reference, released at flush
        self._batch.append((sender, _FileRelayItem(head, spool)))
        self._batch_has_files = True
        self.relayed_files += 1

    def notice(self, text: str, *, exclude: Member | None = None) -> None:
        """Send a notice (spec 3.1.8) to every member but ``exclude``."""
        for piece in split_text(text, TEXT_MAX):
            self._batch.append((exclude, encode(Notice(text=piece))))

    def notice_to(self, member: Member, text: str) -> None:
        """Send a notice to one member, after the relays already collected."""
        self.flush()
        for piece in split_text(text, TEXT_MAX):
            member.transport.write(encode(Notice(text=piece)))

    def flush(self) -> None:
        """Write every collected relay to every member it is for: one write per member."""
        batch = self._batch
        if not batch:
            return
        self._batch = []
        has_files, self._batch_has_files = self._batch_has_files, False
        # Members are iterated from a snapshot: a write that fails, or overflows the member's
        # SendQ, closes that member at once, and its session leaves the room mid-loop.
        if not has_files:
            # The common case: bytes only. One blob for everyone who sent nothing in this pass;
            # senders get the blob without their own frames.
            senders: dict[Member, bytes] = {}
            for sender, _item in batch:
                if sender is not None:
                    senders[sender] = b""
            everyone = b"".join(item for _sender, item in batch)  # type: ignore[misc]
            for sender in senders:
                senders[sender] = b"".join(item for s, item in batch if s is not sender)  # type: ignore[misc]
            for member in list(self._members.values()):
                data = senders.get(member, everyone)
                if data:
                    member.transport.write(data)
            return
        for member in list(self._members.values()):
            transport = member.transport
            pending: list[bytes] = []
            for sender, item in batch:
                if sender is member:
                    continue
                if type(item) is bytes:
                    pending.append(item)
                    continue
                assert isinstance(item, _FileRelayItem)
                if pending:
                    transport.write(b"".join(pending))
                    pending = []
                transport.write_file(item.head, item.spool)
            if pending:
                transport.write(b"".join(pending))
        for _sender, item in batch:
            if type(item) is _FileRelayItem:
                item.spool.release()
