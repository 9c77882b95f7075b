"""One client connection on the server: a transport, a chatwire `Connection`, and what the
events mean (spec 3.1).

The session is the transport's protocol: bytes in go to the connection, events out are handled
here, and replies go back through ``connection.send`` (so the connection checks every frame we
send against the state machine). Relays go through the room, which encodes each once for all.

Any `RemoteProtocolError` closes this connection only, with one log line giving the spec section
and byte offset (spec 6.3): in state LOGIN after ``NE``, later after one explanatory notice.

Every departure, whoever causes it (a quit, a reset, a protocol error, a timeout, a full SendQ,
shutdown), is logged exactly once, by `_end`, with its reason and what was lost with it (an
upload in progress). Flood control (spec 7.3) spends one token per frame that costs the server
work and stops reading, between two frames, a client whose bucket is empty.
"""

from __future__ import annotations

import logging
import math
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
        # The minimum upload rate: bytes written to the upload when the current window began.
        self._window_at = now
        self._window_written = 0
        # Flood control: a token bucket of frames (config flood_rate, flood_burst).
        self._flood_rate = server.config.flood_rate
        self._tokens = float(server.config.flood_burst)
        self._tokens_at = now
        self.throttled = False
        self._throttled_logged = -1e9  # when flood control last said so in the log
        self._pauses = 0

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

    def _flooding(self) -> bool:
        """Flood control, when the bucket is empty: refill it for the time gone by; if it is
        still empty, stop reading this client (between two frames: the rest of what it sent
        waits in its buffer and the kernel's, and TCP holds it back) until about a second's
        worth of frames is allowed again. True while it must wait."""
        if self.throttled:
            return True
        rate = self._flood_rate
        now = self.server.reactor.time()
        burst = float(self.server.config.flood_burst)
        self._tokens = min(burst, self._tokens + (now - self._tokens_at) * rate)
        self._tokens_at = now
        if self._tokens >= 0:
            return False
        self.throttled = True
        self.transport.pause_reading()
        delay = (min(rate, burst) - self._tokens) / rate
        self._pauses += 1
        if now - self._throttled_logged >= 10.0:  # a line per flooder every 10 s at most
            self._throttled_logged = now
            log.info(
                "%s: flood control: not reading for %.1f s (%d pause(s) so far)",
                self.who,
                delay,
                self._pauses,
            )
        self.server.reactor.call_later(delay, self._unthrottle)
        return True

    def _unthrottle(self) -> None:
        self.throttled = False
        now = self.server.reactor.time()
        self.last_input = now  # a paused frame is not a stalled one
        self._window_at = now  # nor a slow upload
        if self._upload is not None:
            self._window_written = self._upload.written
        if self.closed:
            return
        self.transport.resume_reading()
        self._guarded(self._process)  # the frames already buffered
        self._divert_upload()

    def _guarded(self, step: Callable[[], None]) -> None:
        # A bug of ours must cost one connection, never the server (and it is counted: the
        # fuzz tests require the count to stay 0).
        try:
            step()
        except Exception:
            self.server.internal_errors += 1
            log.exception("%s: internal error; closing this connection", self.who)
            self._end("internal error", level=None)  # the line above says it
            self.transport.abort("internal error")

    def connection_lost(self, reason: str) -> None:
        if not self.closed:  # the transport ended it: the peer went, or its SendQ overflowed
            self._end(reason, level=logging.WARNING if self.transport.overflowed else logging.INFO)
        self.server.forget(self)

    # --- Events -------------------------------------------------------------------------------

    def _process(self) -> None:
        connection = self.connection
        room = self.server.room
        limited = self._flood_rate > 0
        try:
            while not self.closed:
                if limited and self._tokens < 0 and self._flooding():
                    return
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
                    if kind is not FileEnd:  # a file is one frame: its header pays
                        self._tokens -= 1.0
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
            self._reply(Refused())
            self._end(f"login as {nick!r} refused: {problem}")
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
        if nick != old:  # a request for one's own nick changes nothing worth a line
            log.info("%s: now known as %r (was %r)", self.transport.peer, nick, old)

    def _start_upload(self, event: File) -> None:
        try:
            self._upload = self.server.spools.open(event.size, owner=self.ip)
        except SpoolError as exc:
            self._refuse_file(f"file {event.name!r} refused: {exc}")
            return
        self._upload_name = event.name
        self._window_at = self.server.reactor.time()
        self._window_written = 0

    def _finish_upload(self) -> None:
        spool = self._upload
        assert spool is not None and spool.complete
        self._upload = None
        self.server.room.relay_file(self, self._upload_name, spool)
        spool.release()  # the uploader's reference; the relays hold their own
        log.info("%s: relayed file %r (%d bytes)", self.who, self._upload_name, spool.size)

    def _refuse_file(self, why: str) -> None:
        self.server.room.notice_to(self, why)
        self.disconnect(why, linger=self.server.config.linger)

    def _protocol_error(self, exc: RemoteProtocolError) -> None:
        why = f"protocol error: {exc}"
        level = logging.WARNING
        if exc.section == "6.5":  # malformed, strictly; in practice a client that went away
            why = f"connection closed by the client inside a frame: {why}"
            level = logging.INFO
        if exc.reply is not None:  # NE to a malformed first frame (spec 6.3)
            self.transport.write(self.connection.send(exc.reply))
            self._end(why, level=level)
            self.transport.close_lingering(self.server.config.linger)
            return
        if self.logged_in and not self.transport.queued_files:
            self.server.room.notice_to(self, f"closing: {why}")
        # Lingering, so that the notice is not destroyed by a reset (input left unread).
        self.disconnect(why, level=level, linger=self.server.config.linger)

    # --- Ending -------------------------------------------------------------------------------

    def disconnect(
        self,
        reason: str,
        *,
        level: int | None = logging.WARNING,
        flush: bool = True,
        timeout: float | None = None,
        linger: float = 0.0,
    ) -> None:
        """Log out and close: after sending what is queued (``flush``, for ``timeout`` seconds
        at most: by default the flush timeout, ``math.inf`` for no limit; then lingering
        ``linger`` seconds so the client sees a clean end of stream) or at once. Logs one line
        at ``level`` (None: none)."""
        if self.closed:
            return
        self._end(reason, level=level)
        if flush:
            if timeout is None:
                timeout = self.server.config.flush_timeout
            self.transport.close(timeout=None if timeout == math.inf else timeout, linger=linger)
        else:
            self.transport.abort(reason)

    def _end(self, reason: str, *, level: int | None = logging.INFO) -> None:
        # Every trace of the client goes (spec 7.1): its nick, its place in the room, its upload.
        # The one log line of its departure says why, and what was lost with it.
        if self.closed:
            return
        self.closed = True
        if level is not None:
            lost = ""
            if self._upload is not None:
                upload = self._upload
                lost = (
                    f"; file {self._upload_name!r} discarded "
                    f"({upload.written} of {upload.size} bytes received)"
                )
            log.log(level, "%s: disconnected: %s%s", self.who, reason, lost)
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
        upload = self._upload
        if upload is not None and config.upload_min_rate and not self.throttled:
            # A trickled upload holds its whole reservation (7.4): it must keep a minimum pace,
            # averaged over each window of upload_rate_window seconds.
            elapsed = now - self._window_at
            if elapsed >= config.upload_rate_window:
                got = upload.written - self._window_written
                if got < config.upload_min_rate * elapsed:
                    return (
                        f"upload too slow: {got} bytes in the last {elapsed:.0f} s "
                        f"(minimum {config.upload_min_rate} bytes/s)"
                    )
                self._window_at, self._window_written = now, upload.written
        return None
