"""The reference server: listeners, sessions, the room and the spool on one reactor.

One process, one thread (spec 4.1 rebuilt without a thread per client). `Server.serve_forever`
runs until SIGINT or SIGTERM, then shuts down as spec 7.5 asks: stop accepting, stop reading,
send what is queued until ``drain_timeout`` seconds have passed, closing each connection (with a
short lingering close, so the client sees a clean end of stream) as soon as it has been sent
everything; at the deadline, cut off whoever is still owed bytes, with one log line saying how
many and how much. Spool files are anonymous, so there is never anything to remove.
"""

from __future__ import annotations

import logging
import math
import resource
import signal
import threading
from collections import Counter

from chatwire.transport import parse_endpoint

from .config import ServerConfig
from .files import SpoolManager
from .reactor import Reactor
from .room import Room
from .session import Session
from .transports import Listener, Transport, prepare

__all__ = ["Server"]


def _open_files_limit() -> int:
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


log = logging.getLogger("chatserver")


class Server:
    """A chat server. Build it (listening starts at once), then `serve_forever`."""

    def __init__(self, config: ServerConfig | None = None) -> None:
        self.config = config = config or ServerConfig()
        self.reactor = Reactor()
        self.room = Room(notices=config.notices)
        #: unexpected exceptions caught (each closed one connection); the fuzz tests want 0
        self.internal_errors = 0
        self.spools = SpoolManager(
            config.spool_dir,
            config.spool_limit,
            config.spool_quota_per_ip,
            schedule=self.reactor.call_soon,
        )
        prepare()
        self.sessions: set[Session] = set()
        self._per_ip: Counter[str] = Counter()
        self.max_clients = config.max_clients or max(16, (_open_files_limit() - 64) // 2)
        self._refused = 0  # connections refused as "server full" since the last log line
        self._refused_logged = 0.0
        self._stopping = False
        self.listeners: list[Listener] = []
        try:
            for url in config.listen:
                self.listeners.append(
                    Listener(
                        self.reactor,
                        parse_endpoint(url),
                        self._on_transport,
                        handshake_timeout=config.handshake_timeout,
                        admit=self._admit,
                    )
                )
        except BaseException:
            self._close_listeners()
            self.reactor.close()
            raise
        self.reactor.add_pass_hook(self.room.flush)
        self._sweep_timer = self.reactor.call_later(1.0, self._sweep)

    @property
    def urls(self) -> list[str]:
        """Where the server listens, ports resolved."""
        return [listener.url for listener in self.listeners]

    # --- Connections ----------------------------------------------------------------------------

    def _full(self) -> bool:
        """True (and a log line a second at most) when no more connections are allowed.
        TLS handshakes in progress count: each holds a descriptor and buffers already."""
        handshaking = sum(listener.handshaking for listener in self.listeners)
        if len(self.sessions) + handshaking < self.max_clients:
            return False
        self._refused += 1
        now = self.reactor.time()
        if now - self._refused_logged >= 1.0:  # one line a second, not one per connection
            log.warning(
                "server full (%d connections): refused %d connection(s)",
                self.max_clients,
                self._refused,
            )
            self._refused, self._refused_logged = 0, now
        return True

    def _admit(self, peer: str) -> bool:
        # Asked by a TLS listener before a handshake starts.
        return not self._stopping and not self._full()

    def _on_transport(self, transport: Transport) -> None:
        if self._stopping:
            transport.abort("server stopping")
            return
        if self._full():
            transport.abort("server full")
            return
        # Unix-socket clients are local and share no address: the per-address limit skips them.
        ip = "" if transport.scheme == "unix" else transport.peer.rsplit(":", 1)[0]
        if ip and self.config.max_per_ip and self._per_ip[ip] >= self.config.max_per_ip:
            log.warning(
                "%s: refused: already %d connections from %s", transport.peer, self._per_ip[ip], ip
            )
            transport.abort("too many connections from this address")
            return
        self._per_ip[ip] += 1
        transport.set_sendq(self.config.sendq, self.config.max_queued_files)  # spec 7.3
        session = Session(self, transport, ip=ip)
        self.sessions.add(session)
        transport.start(session)

    def forget(self, session: Session) -> None:
        """Called once per session when its transport is gone."""
        if session in self.sessions:
            self.sessions.remove(session)
            ip = session.ip
            self._per_ip[ip] -= 1
            if not self._per_ip[ip]:
                del self._per_ip[ip]
        if self._stopping and not self.sessions:
            self.reactor.stop()

    def _sweep(self) -> None:
        # Timeouts of spec 7.2, checked once a second for every connection.
        now = self.reactor.time()
        for session in list(self.sessions):
            if session.closed:
                continue
            why = session.expired(now)
            if why is None and session.transport.stalled_for(now) > self.config.write_timeout:
                why = f"not reading: nothing could be sent for {self.config.write_timeout:g} s"
            if why is not None:
                session.disconnect(why, level=logging.INFO, flush=False)
        self._sweep_timer = self.reactor.call_later(1.0, self._sweep)

    # --- Running --------------------------------------------------------------------------------

    def serve_forever(self) -> None:
        """Run until SIGINT/SIGTERM (main thread) or `stop`."""
        if threading.current_thread() is threading.main_thread():
            self.reactor.on_signal(signal.SIGINT, lambda: self.shutdown("SIGINT"))
            self.reactor.on_signal(signal.SIGTERM, lambda: self.shutdown("SIGTERM"))
            self.reactor.on_signal(signal.SIGUSR1, self.log_stats)
        try:
            self.reactor.run()
        finally:
            self._abort_all("server stopped")
            self.spools.close()
            self._close_listeners()
            self.reactor.close()
            log.info("stopped")

    def stop(self) -> None:
        """Ask the server to shut down, from any thread."""
        self.reactor.call_threadsafe(lambda: self.shutdown("stop requested"))

    def shutdown(self, why: str) -> None:
        """Spec 7.5: stop accepting and reading, drain queues until the deadline, close."""
        if self._stopping:
            return
        self._stopping = True
        drain = self.config.drain_timeout
        log.info("shutting down (%s): draining for up to %g s", why, drain)
        self._close_listeners()
        self.room.flush()
        linger = min(self.config.drain_linger, drain)
        for session in list(self.sessions):
            session.transport.pause_reading()
            # No timeout of its own: the deadline below cuts off whoever is still owed bytes.
            session.disconnect(
                f"server shutting down ({why})",
                level=logging.DEBUG,
                timeout=math.inf,
                linger=linger,
            )
        if not self.sessions:
            self.reactor.stop()
            return
        self.reactor.call_later(drain, self._drain_deadline)

    def _drain_deadline(self) -> None:
        owed = [s for s in self.sessions if s.transport.unsent_bytes]
        if owed:
            log.warning(
                "drain deadline (%g s) passed: cutting off %d client(s) with %d bytes unsent",
                self.config.drain_timeout,
                len(owed),
                sum(s.transport.unsent_bytes for s in owed),
            )
        self._abort_all("drain deadline passed")

    def _abort_all(self, why: str) -> None:
        for session in list(self.sessions):
            session.transport.abort(why)
        self.reactor.stop()

    def _close_listeners(self) -> None:
        for listener in self.listeners:
            listener.close()

    def log_stats(self) -> None:
        """One log line with the counters (on SIGUSR1)."""
        log.info("stats: %s", " ".join(f"{k}={v}" for k, v in self.stats().items()))

    def stats(self) -> dict[str, int]:
        """Counters for tests and operators."""
        transports = [session.transport for session in self.sessions]
        return {
            "connections": len(self.sessions),
            "queued_bytes": sum(t.queued_bytes for t in transports),
            "queued_files": sum(t.queued_files for t in transports),
            "members": len(self.room),
            "open_spools": self.spools.open_spools,
            "spool_used": self.spools.used,
            "relayed_messages": self.room.relayed_messages,
            "relayed_files": self.room.relayed_files,
            "internal_errors": self.internal_errors + self.reactor.errors,
        }
