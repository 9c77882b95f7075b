"""The sans-I/O connection: bytes in, events out; events in, bytes out.

`Connection` is the public face of chatwire, shaped like h11's: it owns no socket and no thread.

- ``receive_data(data)`` hands it bytes as they arrive, in chunks of any size (``b""`` means the
  peer closed its side); ``next_event()`` returns the next `Event`, or `NEED_DATA` when it needs
  more bytes, or `PAUSED` (server only) while a login waits for the server's answer.
- ``send(event)`` checks that the event is legal now and returns the bytes to write.

How a frame is read (spec 2): peek at 10 bytes and parse the header (spec 2.3), name the message
from the direction, code and number of sizes (spec 2.6), check it against the state machine
(spec 4.3), check its sizes (spec 2.7), then wait until the whole frame is buffered, cut it and
parse it. File data is not buffered at all: it leaves as ``FileData`` events holding
memoryviews of the received chunks, so a 9 GB file passes through a few hundred KiB.

Memory: the decoder itself waits for at most one frame head, and a size is checked before the
payload it announces is awaited, so a caller that reads events until `NEED_DATA` before it
feeds more holds less than one frame head plus the chunk it feeds: under 10 + ``TEXT_MAX``
bytes on a server, under 10 + ``LIST_MAX`` (a ``list-reply``, 1 MB) on a client (spec 2.7).
Bytes pile up only if the caller feeds without reading, or while `PAUSED` (a server that has
not answered a login yet reads nothing). For those callers the bound is `MAX_BUFFERED`:
``receive_data`` refuses more data while more than that is buffered. After the connection has
closed (``NE``, an error, spec 6.2) received bytes are dropped: nothing will read them.

Any input either yields events or raises `RemoteProtocolError` (with the spec section and the
byte offset); after that error the connection is dead (spec 6.2) and raises it again. Misuse of
the API raises `LocalProtocolError` and changes nothing.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from typing import Any, Final, Literal

from ._buffer import ReceiveBuffer
from ._codec import (
    EVENT_MESSAGES,
    FAST_READERS,
    ConstructParser,
    FastParser,
    Parser,
    encode,
    head_length,
    identify,
)
from ._errors import LocalProtocolError, RemoteProtocolError
from ._events import (
    ConnectionClosed,
    Event,
    File,
    FileData,
    FileEnd,
    FileRelay,
    Refused,
)
from ._limits import FILE_MAX, HEADER_SIZE, LIST_MAX
from ._state import SERVER_SILENT, TRANSITIONS, ConnectionState, State
from ._wire import MESSAGES, Direction, FrameError

__all__ = ["MAX_BUFFERED", "NEED_DATA", "PAUSED", "Connection", "Role"]


class Role(enum.Enum):
    """Which end of the connection we are."""

    CLIENT = "client"
    SERVER = "server"


class _Sentinel(enum.Enum):
    NEED_DATA = "NEED_DATA"
    PAUSED = "PAUSED"

    def __repr__(self) -> str:
        return self.value

    __str__ = __repr__


#: `Connection.next_event` needs more bytes before it can return an event.
NEED_DATA: Final = _Sentinel.NEED_DATA
#: `Connection.next_event` (server role) waits for the answer to a login (``ACC`` or ``NE``)
#: before it reads further (spec 3.1.1: a client sends nothing before ``ACC``).
PAUSED: Final = _Sentinel.PAUSED

#: The most received bytes a `Connection` holds unread before ``receive_data`` refuses more:
#: the longest frame head of the protocol, a ``list-reply`` of ``LIST_MAX`` bytes (spec 2.7).
#: A caller that reads events until `NEED_DATA` between feeds never reaches it.
MAX_BUFFERED: Final = HEADER_SIZE + LIST_MAX

_PARSERS: dict[str, Parser] = {"fast": FastParser(), "construct": ConstructParser()}
_STREAMED = ("file", "file-relay")

# The direct path (see Connection._next_event). A plan is what the full path learnt from one
# exact header: (message, sizes, frame length, reader). Plans are stored only after that header
# passed every check that depends on the header alone (2.3, 2.6, 2.7), so reusing one skips
# nothing; they are kept per direction, shared by every connection of the process, and their
# number is bounded. When the table is full it is emptied and refilled, so a peer that sends
# thousands of distinct headers costs the others one full-path pass per header they use, and
# never turns the direct path off. (An LRU would cost bookkeeping on every hit, the hot path.)
_Plan = tuple[str, tuple[int, ...], int, Any]
_PLANS: dict[Direction, dict[bytes, _Plan]] = {d: {} for d in Direction}
_PLANS_MAX = 4096
# Messages that, in a given state, have no condition, no effect on pending and keep the state:
# receiving them needs no state-machine work. Streamed messages (file data) are left out.
_FREE: dict[tuple[Direction, State], frozenset[str]] = {
    (direction, state): frozenset(
        message
        for (s, message, d), row in TRANSITIONS.items()
        if s is state
        and d is direction
        and row.next is state
        and row.requires is None
        and row.push is None
        and not row.pop
        and message not in _STREAMED
    )
    for direction in Direction
    for state in State
}


def _nbytes(data: bytes | bytearray | memoryview) -> int:
    return data.nbytes if isinstance(data, memoryview) else len(data)


def _as_bytes(data: object) -> bytes:
    # receive_data's slow path: anything but exactly bytes. Mutable buffers are copied so the
    # caller may reuse them; everything that is not bytes-like is refused (not taken as EOF).
    if isinstance(data, bytes | bytearray):
        return bytes(data)
    if isinstance(data, memoryview):
        return data.tobytes()
    raise LocalProtocolError(
        f"receive_data takes bytes, bytearray or memoryview, not {type(data).__name__} "
        '(the end of the stream is b"")'
    )


def _count(size: object) -> int:
    if isinstance(size, bool) or not isinstance(size, int):
        raise LocalProtocolError(f"a byte count must be an int, not {type(size).__name__}")
    return size


class Connection:
    """One end of one chatwire connection.

    Args:
        role: ``Role.CLIENT`` or ``Role.SERVER``.
        max_file_size: server only: the largest file this server accepts (spec 3.1.4 lets a
            server set a limit below ``FILE_MAX``; 6.1 item 4); a larger ``<file_size>`` header
            is a `RemoteProtocolError` raised as soon as that header arrives. ``None`` (the
            default) means ``FILE_MAX``. The spec gives clients no such limit: a relayed file
            of any size up to ``FILE_MAX`` is well formed, and a client that does not want it
            reads and discards its data.
        parser: ``"fast"`` (default) or ``"construct"``, the slow reference parser; both give
            identical results.

    Raises:
        LocalProtocolError: ``role`` is not a `Role`; ``max_file_size`` is not a non-negative
            int, or is given for a client; ``parser`` is neither name.
    """

    def __init__(
        self,
        role: Role,
        *,
        max_file_size: int | None = None,
        parser: Literal["fast", "construct"] = "fast",
    ) -> None:
        if not isinstance(role, Role):
            raise LocalProtocolError(f"role must be a Role, not {role!r}")
        if max_file_size is None:
            max_file_size = FILE_MAX
        elif role is Role.CLIENT:
            # spec 3.1.4, 6.1 item 4: only a server may refuse a file for its size.
            raise LocalProtocolError(
                "max_file_size is a server's limit (spec 3.1.4); a client receives every "
                "well-formed file and may discard it",
                section="3.1.4",
            )
        elif (
            isinstance(max_file_size, bool)
            or not isinstance(max_file_size, int)
            or max_file_size < 0
        ):
            raise LocalProtocolError(
                f"max_file_size must be a non-negative int, not {max_file_size!r}"
            )
        if parser not in _PARSERS:
            raise LocalProtocolError(f"parser must be 'fast' or 'construct', not {parser!r}")
        self.role: Final = role
        #: The largest file this end accepts: ``FILE_MAX`` for a client (spec 3.1.4).
        self.max_file_size: Final = min(max_file_size, FILE_MAX)
        self._parser = _PARSERS[parser]
        self._plans = (
            _PLANS[Direction.S2C if role is Role.CLIENT else Direction.C2S]
            if parser == "fast"
            else None
        )
        self._incoming = Direction.S2C if role is Role.CLIENT else Direction.C2S
        self._outgoing = Direction.C2S if role is Role.CLIENT else Direction.S2C
        self._state = ConnectionState()
        self._buffer = ReceiveBuffer()
        self._offset = 0  # stream offset of the first unconsumed received byte
        self._eof = False
        self._recv_left = -1  # data bytes still to come in the received file, or -1
        self._send_left = -1  # data bytes still to send in our file, or -1
        self._error: RemoteProtocolError | None = None
        self._reply_sent = False
        self._free: frozenset[str] = frozenset()
        self._free_out: frozenset[str] = frozenset()
        # event class -> message name, for the events this role may send (spec 2.6)
        self._sendable = {
            kind: name
            for kind, name in EVENT_MESSAGES.items()
            if MESSAGES[name].direction is self._outgoing
        }

    def _moved(self) -> None:
        # After every state change: which messages now need no state-machine work.
        state = self._state.state
        if state is State.CLOSED:
            # spec 6.2, 3.1.1: nothing more is read after NE at login, an error or the end, so
            # the bytes that came with the last frame are not kept either.
            self._buffer.clear()
        self._free = _FREE[(self._incoming, state)]
        if self.role is Role.SERVER and state in SERVER_SILENT:
            self._free_out = frozenset()  # spec 3.1.5: send() refuses every frame now
        else:
            self._free_out = _FREE[(self._outgoing, state)]

    # --- State ------------------------------------------------------------------------------

    @property
    def state(self) -> State:
        """The state of spec 4.3."""
        return self._state.state

    @property
    def pending(self) -> tuple[str, ...]:
        """Requests awaiting a reply, oldest first (``"list"`` or ``"nick"``; spec 5.2)."""
        return tuple(self._state.pending)

    @property
    def error(self) -> RemoteProtocolError | None:
        """The error that ended the connection, if the peer sent something malformed."""
        return self._error

    @property
    def bytes_received(self) -> int:
        """Bytes of the received stream consumed into events so far."""
        return self._offset

    @property
    def buffered(self) -> int:
        """Received bytes not yet turned into events (a partial frame, or frames not read); 0
        once the connection is closed, since those bytes are dropped (see `receive_data`)."""
        return len(self._buffer)

    @property
    def receiving_file(self) -> bool:
        """True between a received ``File``/``FileRelay`` and its ``FileEnd``."""
        return self._recv_left >= 0

    @property
    def sending_file(self) -> bool:
        """True between a sent ``File``/``FileRelay`` and its ``FileEnd``."""
        return self._send_left >= 0

    # --- Receiving --------------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Add received bytes. ``b""`` (an empty buffer) is the one end-of-stream signal: the
        peer closed its side.

        ``bytes`` are kept by reference (file data is handed back as views of them); a
        ``bytearray`` or ``memoryview`` is copied, so the caller may reuse it. Read events
        until `NEED_DATA` before feeding more, and do not feed while `PAUSED`: bytes that are
        not read pile up, and more than `MAX_BUFFERED` of them are refused. Once the
        connection is ``CLOSED`` (after ``NE`` at login, or a `RemoteProtocolError`) the bytes
        are dropped, since nothing will read them.

        Raises:
            LocalProtocolError: ``data`` is not bytes, bytearray or memoryview; data after the
                end of the stream; more than `MAX_BUFFERED` bytes are already buffered unread.
                Nothing is buffered then.
        """
        if type(data) is not bytes:
            data = _as_bytes(data)
        if self._eof:
            raise LocalProtocolError("receive_data after the end of the stream")
        if not data:
            self._eof = True
            return
        buffer = self._buffer
        if self._state.state is State.CLOSED:
            return  # spec 6.2: nothing is read after the end, so nothing is kept
        if buffer._size > MAX_BUFFERED:
            raise LocalProtocolError(
                f"{buffer._size} received bytes are buffered unread (at most {MAX_BUFFERED}): "
                "read events until NEED_DATA before feeding more, and do not feed while PAUSED"
            )
        buffer.feed(data)

    def next_event(self) -> Event | Literal[_Sentinel.NEED_DATA, _Sentinel.PAUSED]:
        """The next event from the received bytes, `NEED_DATA` or `PAUSED`.

        Raises:
            RemoteProtocolError: the peer broke the spec; the connection is dead and raises
                the same error again on every later call.
        """
        if self._error is not None:
            raise self._error
        try:
            # Direct path, for chat at full speed: the next frame lies whole in the first
            # chunk, its exact header has been seen before (a plan), and the message needs no
            # state work now. Everything else takes the full path (`_next_event`), which is
            # also what made the plan. It sits here, not there, to save a call per frame
            # (with `_read_msg` decoding inline: 7 % fewer instructions per msg, callgrind).
            buffer = self._buffer
            if self._plans is not None and self._recv_left < 0 and buffer._chunks:
                first = buffer._chunks[0]
                pos = buffer._pos
                plan = self._plans.get(first[pos : pos + HEADER_SIZE])
                if plan is not None and plan[0] in self._free and len(first) - pos >= plan[2]:
                    event: Event = plan[3](first, pos, plan[1])
                    buffer.commit(plan[2])
                    self._offset += plan[2]
                    return event
            return self._next_event()
        except FrameError as exc:
            # The one boundary where construct's errors become protocol errors (house style).
            raise self._fail(exc.message, exc.section, self._offset + exc.offset) from exc

    def events(self) -> Iterator[Event]:
        """Yield events until `NEED_DATA`, `PAUSED` or ``ConnectionClosed`` (included).

        Raises:
            RemoteProtocolError: as `next_event`, from the event where the peer broke the
                spec; the events before it have been yielded.
        """
        while True:
            event = self.next_event()
            if event is NEED_DATA or event is PAUSED:
                return
            yield event
            if type(event) is ConnectionClosed:
                return

    def _fail(self, message: str, section: str, offset: int) -> RemoteProtocolError:
        # spec 6.3: a server meeting a malformed first frame answers NE before closing.
        reply = Refused() if self.role is Role.SERVER and self._state.state is State.LOGIN else None
        self._error = RemoteProtocolError(message, section=section, offset=offset, reply=reply)
        self._reply_sent = False
        self._state.close()
        self._moved()
        return self._error

    def _next_event(self) -> Event | Literal[_Sentinel.NEED_DATA, _Sentinel.PAUSED]:
        buffer = self._buffer
        if self._recv_left >= 0:
            return self._next_data()
        plans = self._plans
        state = self._state.state
        if state is State.CLOSED:
            return ConnectionClosed()
        if state is State.AWAIT_ACC and self.role is Role.SERVER:
            return PAUSED
        peeked = buffer.peek(HEADER_SIZE)
        if peeked is None:
            return self._short()
        block, start = peeked
        parser = self._parser
        code, sizes = parser.header(block, start)
        name = identify(self._incoming, code, sizes)
        problem = self._state.problem(name, self._incoming)
        if problem is not None:
            raise FrameError(problem, section="4.3")
        parser.check(name, block, start, sizes)
        length = head_length(name, sizes)
        if plans is not None and name not in _STREAMED:
            raw = block[start : start + HEADER_SIZE]
            if raw not in plans:
                if len(plans) >= _PLANS_MAX:
                    plans.clear()  # self-healing, see _PLANS
                plans[raw] = (name, sizes, length, FAST_READERS[name])
        peeked = buffer.peek(length)
        if peeked is None:
            return self._short()
        block, start = peeked
        event = parser.frame(name, block, start, sizes)
        if name in _STREAMED:
            assert isinstance(event, File | FileRelay)
            if event.size > self.max_file_size:
                raise FrameError(
                    f"file of {event.size} bytes exceeds this end's limit of {self.max_file_size}",
                    section="3.1.4",
                    offset=length - HEADER_SIZE,
                )
            self._recv_left = event.size
        buffer.commit(length)
        self._offset += length
        self._state.apply(name, self._incoming)
        self._moved()
        return event

    def _next_data(self) -> Event | Literal[_Sentinel.NEED_DATA]:
        left = self._recv_left
        if left == 0:
            self._recv_left = -1
            return FileEnd()
        view = self._buffer.take(left)
        if not view:
            return self._short()
        self._recv_left = left - len(view)
        self._offset += len(view)
        return FileData(data=view)

    def _short(self) -> Event | Literal[_Sentinel.NEED_DATA]:
        # Not enough bytes buffered for the next step: wait, or the stream has ended (spec 6.5).
        if not self._eof:
            return NEED_DATA
        inside = bool(self._buffer) or self._recv_left >= 0
        if inside and not (self._state.state is State.QUIT and self.role is Role.CLIENT):
            raise FrameError(
                f"the stream ended inside a frame ({len(self._buffer)} bytes of it buffered)",
                section="6.5",
                offset=len(self._buffer),
            )
        self._recv_left = -1
        self._state.close()
        self._moved()
        return ConnectionClosed()

    # --- Sending ----------------------------------------------------------------------------

    def send(self, event: Event) -> bytes | bytearray | memoryview:
        """The bytes to write for ``event``, after checking it is legal now.

        For ``FileData`` the data itself is returned (no copy); for ``FileEnd`` ``b""``.

        A server that has received ``Quit`` sends no frame any more (spec 3.1.5): it may only
        finish the data of a ``FileRelay`` it had started before.

        Raises:
            LocalProtocolError: the event is illegal in this state or for this role; nothing
                changes.
        """
        if self._error is not None:
            # The one frame still allowed after a remote error is the reply the spec prescribes.
            if event == self._error.reply and not self._reply_sent:
                self._reply_sent = True
                return encode(event)
            raise LocalProtocolError(f"the connection has failed: {self._error}")
        kind = type(event)
        if self._send_left >= 0:
            if kind is FileData:
                assert isinstance(event, FileData)
                self._account(_nbytes(event.data))
                return event.data
            if kind is FileEnd:
                if self._send_left:
                    raise LocalProtocolError(
                        f"FileEnd with {self._send_left} bytes of the file still to send",
                        section="3.1.4",
                    )
                self._send_left = -1
                return b""
            raise LocalProtocolError(
                f"cannot send {kind.__name__} in the middle of a file: frames never interleave",
                section="5.1",
            )
        name = self._sendable.get(kind)
        if name is None:
            if kind is FileData or kind is FileEnd:
                raise LocalProtocolError(f"{kind.__name__} without a File or FileRelay before it")
            other = EVENT_MESSAGES.get(kind)
            if other is None:
                raise LocalProtocolError(f"{kind.__name__} is not a frame one can send")
            raise LocalProtocolError(f"a {self.role.value} cannot send {other!r}", section="2.6")
        if name in self._free_out:
            return encode(event)  # legal now and changes no state (spec 4.3)
        if self.role is Role.SERVER and self._state.state in SERVER_SILENT:
            # spec 3.1.5: "The server MUST NOT start sending a frame after it has read `quit`".
            # Table 4.3's QUIT rows are the client's, for frames sent before that (4.3 note).
            raise LocalProtocolError(
                f"a server cannot send {name!r} after it has read quit", section="3.1.5"
            )
        problem = self._state.problem(name, self._outgoing)
        if problem is not None:
            raise LocalProtocolError(problem, section="4.3")
        data = encode(event)
        self._state.apply(name, self._outgoing)
        self._moved()
        if isinstance(event, File | FileRelay):
            self._send_left = event.size
        return data

    @property
    def file_data_wanted(self) -> int:
        """While a received file's data is arriving and nothing is buffered: how many of its
        bytes are still to come, which the caller may read from the stream itself (straight
        to disk, say) and report with `file_data_received`. 0 otherwise."""
        if self._recv_left > 0 and not self._buffer:
            return self._recv_left
        return 0

    def file_data_received(self, size: int) -> None:
        """Record that the caller took ``size`` bytes of the current file's data from the stream
        itself, instead of passing them to `receive_data`; ``next_event`` then goes on as if
        it had handed them out as ``FileData``.

        Raises:
            LocalProtocolError: ``size`` is not an int, or exceeds `file_data_wanted`.
        """
        if not 0 <= _count(size) <= self.file_data_wanted:
            raise LocalProtocolError(
                f"{size} bytes of file data taken, but only {self.file_data_wanted} may be"
            )
        self._recv_left -= size
        self._offset += size

    def account_file_data(self, size: int) -> None:
        """Record that ``size`` bytes of the current file's data were written without `send`
        (for example with ``os.sendfile``), exactly as ``send(FileData(...))`` would.

        Raises:
            LocalProtocolError: no file is being sent, or ``size`` is not an int from 0 to what
                is left.
        """
        if self._send_left < 0:
            raise LocalProtocolError("no file is being sent")
        if _count(size) < 0:
            raise LocalProtocolError(f"a negative byte count: {size}")
        self._account(size)

    def _account(self, size: int) -> None:
        if size > self._send_left:
            raise LocalProtocolError(
                f"{size} bytes of data but only {self._send_left} left in the file", section="3.1.4"
            )
        self._send_left -= size
