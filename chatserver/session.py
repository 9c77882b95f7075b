"""One client connection on the server: a transport, a chatwire `Connection`, and what the
events mean (spec 3.1).

The session is the transport's protocol: bytes in go to the connection, events out are handled
here, and replies go back through ``connection.send`` (so the connection checks every frame we
send against the state machine). Relays go through the room, which encodes each once for all.

Any `RemoteProtocolError` closes this connection only, with one log line giving the spec section
and byte offset (spec 6.3): in state LOGIN after ``NE``, later after one explanatory notice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from chatwire import (
    NEED_DATA,
    Accepted,
    Connection,
    ConnectionClosed,
    File,
    FileData,
    FileEnd,
    ListReply,
    ListRequest,
    Login,
    Message,
    NickChanged,
    NickRequest,
    Quit,
    Refused,
    RemoteProtocolError,
    Role,
    State,
    nick_error,
)

from .files import Spool, SpoolError

if TYPE_CHECKING:  # pragma: no cover
    from .server import Server
    from .transports import Transport

__all__ = ["Session"]

log = logging.getLogger("chatserver")


class Session:
    """The server's side of one client connection."""

    def __init__(self, server: Server, transport: Transport, *, ip: str = "") -> None:
        self.server = server
        self.transport = transport
        self.ip = ip  # for the per-address connection limit
        self.connection = Connection(Role.SERVER, max_file_size=server.config.max_file_size)
        self.nick = ""
        self.nick_bytes = b""
        self.logged_in = False
        self.closed = False
        now = server.reactor.time()
        self.connected_at = now
        self.last_input = now
        self._upload: Spool | None = None
        self._upload_name = ""
        # Flood control: a token bucket of relayed frames (config flood_rate, flood_burst).
        self._tokens = float(server.config.flood_burst)
        self._tokens_at = now
        self.throttled = False

    def __repr__(self) -> str:
        return f"<Session {self.transport.peer} {self.nick or '(login)'}>"

    @property
    def who(self) -> str:
        """The client, for log lines: its address, and its nick once logged in."""
        return f"{self.transport.peer} ({self.nick})" if self.nick else self.transport.peer

    @property
    def mid_frame(self) -> bool:
        """True while a frame has started but not finished arriving (spec 7.2 stalls)."""
        return self.connection.buffered > 0 or self.connection.receiving_file

    # --- Transport callbacks ------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self.last_input = self.server.reactor.time()
        self.connection.receive_data(data)
        self._guarded(self._process)
        self._divert_upload()
        self._throttle()

    def eof_received(self) -> None:
        if self.closed:
            return
        self.connection.receive_data(b"")
        self._guarded(self._process)

    def _divert_upload(self) -> None:
        # While a file's data arrives and nothing else is buffered, the transport moves it
        # straight into the spool (spliced on plain sockets): no events, no copy through Python.
        wanted = self.connection.file_data_wanted
        if wanted and self._upload is not None and not self.closed:
            self.transport.divert(wanted, self._upload.fd, self._file_bytes)

    def _file_bytes(self, count: int) -> None:
        self._guarded(lambda: self._stored(count))

    def _stored(self, count: int) -> None:
        assert self._upload is not None
        self._upload.wrote(count)
        self.connection.file_data_received(count)
        self.last_input = self.server.reactor.time()
        if not self.connection.file_data_wanted:
            self._process()  # FileEnd, and whatever follows

    def _spend(self) -> None:
        # One relayed frame. The bucket may go negative within one read; _throttle settles it.
        self._tokens -= 1.0

    def _throttle(self) -> None:
        """Flood control: if this client sent more than its bucket allows, stop reading it
        until the bucket has refilled. Only the flooder feels it (TCP backpressure)."""
        rate = self.server.config.flood_rate
        if not rate or self.closed:
            return
        now = self.server.reactor.time()
        burst = float(self.server.config.flood_burst)
        self._tokens = min(burst, self._tokens + (now - self._tokens_at) * rate)
        self._tokens_at = now
        if self._tokens >= 0 or self.throttled:
            return
        self.throttled = True
        self.transport.pause_reading()
        delay = -self._tokens / rate
        log.info("%s: flood control: not reading for %.1f s", self.who, delay)
        self.server.reactor.call_later(delay, self._unthrottle)

    def _unthrottle(self) -> None:
        self.throttled = False
        self.last_input = self.server.reactor.time()  # a paused frame is not a stalled one
        if not self.closed:
            self.transport.resume_reading()

    def _guarded(self, step: Callable[[], None]) -> None:
        # A bug of ours must cost one connection, never the server (and it is counted: the
        # fuzz tests require the count to stay 0).
        try:
            step()
        except Exception:
            self.server.internal_errors += 1
            log.exception("%s: internal error; closing this connection", self.who)
            self._end("internal error")
            self.transport.abort("internal error")

    def connection_lost(self, reason: str) -> None:
        if not self.closed:
            self._end(reason)
        self.server.forget(self)

    # --- Events -------------------------------------------------------------------------------

    def _process(self) -> None:
        connection = self.connection
        room = self.server.room
        try:
            while not self.closed:
                event = connection.next_event()
                kind = type(event)
                if kind is Message:
                    room.relay_text(self, event.text)  # type: ignore[union-attr]
                    self._tokens -= 1.0  # flood control
                elif kind is FileData:
                    assert self._upload is not None
                    self._upload.write(event.data)  # type: ignore[union-attr]
                elif event is NEED_DATA:
                    return
                else:
                    self._handle(event)
        except RemoteProtocolError as exc:
            self._protocol_error(exc)

    def _handle(self, event: object) -> None:
        room = self.server.room
        if isinstance(event, Login):
            self._login(event.nick)
        elif isinstance(event, ListRequest):
            room.flush()
            self._reply(ListReply(nicks=room.nicks()))
        elif isinstance(event, NickRequest):
            self._change_nick(event.nick)
        elif isinstance(event, File):
            self._start_upload(event)
        elif isinstance(event, FileEnd):
            self._finish_upload()
        elif isinstance(event, Quit):
            self.disconnect("quit", level=logging.INFO, flush=False)
        elif isinstance(event, ConnectionClosed):
            self.disconnect("connection closed by the client", level=logging.INFO, flush=False)
        else:  # PAUSED cannot happen: a login is answered before the next event is asked for
            raise AssertionError(f"unexpected event {event!r}")

    def _reply(self, event: Accepted | Refused | NickChanged | ListReply) -> None:
        self.transport.write(self.connection.send(event))

    def _login(self, nick: str) -> None:
        server = self.server
        problem = nick_error(nick)
        if problem is None and server.room.holder(nick) is not None:
            problem = "nick already in use"
        if problem is not None:
            log.info("%s: login as %r refused: %s", self.who, nick, problem)
            self._reply(Refused())
            self._end("login refused")
            self.transport.close_lingering(server.config.linger)  # spec 3.1.1
            return
        server.room.join(self, nick)
        self.logged_in = True
        self._reply(Accepted())
        log.info("%s: logged in as %r", self.transport.peer, nick)
        if server.config.welcome:
            server.room.notice_to(self, server.config.welcome)

    def _change_nick(self, nick: str) -> None:
        room = self.server.room
        problem = nick_error(nick)
        holder = room.holder(nick)
        if problem is None and holder is not None and holder is not self:
            problem = "nick already in use"
        if problem is not None:
            log.info("%s: nick change to %r refused: %s", self.who, nick, problem)
            room.flush()
            self._reply(Refused())
            return
        old = self.nick
        room.rename(self, nick)
        self._reply(NickChanged())
        log.info("%s: now known as %r (was %r)", self.transport.peer, nick, old)

    def _start_upload(self, event: File) -> None:
        try:
            self._upload = self.server.spools.open(event.size)
        except SpoolError as exc:
            self._refuse_file(f"file {event.name!r} refused: {exc}")
            return
        self._upload_name = event.name

    def _finish_upload(self) -> None:
        spool = self._upload
        assert spool is not None and spool.complete
        self._upload = None
        self.server.room.relay_file(self, self._upload_name, spool)
        spool.release()  # the uploader's reference; the relays hold their own
        self._spend()
        log.info("%s: relayed file %r (%d bytes)", self.who, self._upload_name, spool.size)

    def _refuse_file(self, why: str) -> None:
        log.warning("%s: %s; closing", self.who, why)
        self.server.room.notice_to(self, why)
        self.disconnect(why, level=None)

    def _protocol_error(self, exc: RemoteProtocolError) -> None:
        log.warning("%s: protocol error: %s; closing", self.who, exc)
        if exc.reply is not None:  # NE to a malformed first frame (spec 6.3)
            self.transport.write(self.connection.send(exc.reply))
            self._end(f"protocol error: {exc}")
            self.transport.close_lingering(self.server.config.linger)
            return
        if self.logged_in and not self.transport.queued_files:
            self.server.room.notice_to(self, f"closing: protocol error: {exc}")
        self.disconnect(f"protocol error: {exc}", level=None)

    # --- Ending -------------------------------------------------------------------------------

    def disconnect(
        self, reason: str, *, level: int | None = logging.WARNING, flush: bool = True
    ) -> None:
        """Log out and close: after sending what is queued (``flush``, bounded by the flush
        timeout) or at once."""
        if self.closed:
            return
        if level is not None:
            log.log(level, "%s: closing: %s", self.who, reason)
        self._end(reason)
        if flush:
            self.transport.close(timeout=self.server.config.flush_timeout)
        else:
            self.transport.abort(reason)

    def _end(self, reason: str) -> None:
        # Every trace of the client goes (spec 7.1): its nick, its place in the room, its upload.
        if self.closed:
            return
        self.closed = True
        if self.logged_in:
            self.server.room.leave(self, reason)
            self.logged_in = False
        if self._upload is not None:
            self._upload.release()
            self._upload = None

    def expired(self, now: float) -> str | None:
        """Why this session has timed out at ``now`` (spec 7.2), or ``None``."""
        config = self.server.config
        if self.connection.state is State.LOGIN and now - self.connected_at > config.login_timeout:
            return f"no login within {config.login_timeout:g} s"
        if self.mid_frame and not self.throttled and now - self.last_input > config.stall_timeout:
            return f"frame stalled for {config.stall_timeout:g} s"
        return None
