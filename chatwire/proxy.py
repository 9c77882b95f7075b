"""``chatwire-proxy`` / ``python -m chatwire.proxy``: a trace proxy between any client and server.

    python -m chatwire.proxy --listen tcp://127.0.0.1:4000 --upstream tcp://127.0.0.1:1234

Point a client at the ``--listen`` address; the proxy connects to ``--upstream`` for each client
and shows what the two programs really send each other::

    14:02:11.532104 [1] C->S  login 'ana'  [3         ana]
    14:02:11.533012 [1] S->C  ACC  [ACC       ]
    14:02:12.001377 [1] C->S  file 'photo.jpg' (812338 bytes)  [file 9    photo.jpg812338    ]
    14:02:12.094410 [1] C->S  ... 812338 bytes of file data (sha256 4f2a...)
    14:02:13.250001 [1] C->S  !! VIOLATION: header b'msg 05    ' does not match the grammar ...

Rules:

- **Bytes are forwarded unchanged**, in both directions, whatever they hold; the proxy never
  alters, delays on purpose, adds or drops a byte, and keeps forwarding after a violation. A
  half-close is passed on (``NE`` and ``quit`` rely on it), except over TLS, where the other
  direction is closed too.
- Every frame is decoded and printed with a timestamp, the connection's number and its
  direction, then its bytes as in ``spec/vectors`` (``\\xNN`` for anything but printable
  ASCII). File data is summarised (size and SHA-256), never dumped.
- **Violations are flagged**, not fixed: the first frame a direction's decoder refuses is
  printed with the spec section, the byte offset, the offending bytes and, for a header, what
  is wrong with it (NUL padding, a leading zero...). That direction is not decoded further (the
  protocol cannot resynchronise, spec 6.2) but its bytes are still forwarded.
- **Only the guilty side is blamed.** Once one direction has broken the protocol, the proxy no
  longer knows the state of the connection (a request it could not decode may be answered), so
  it stops checking the other direction against the state machine (spec 4.3) and says so; that
  direction's frames are still decoded and checked for their form, sizes and payloads. One
  exception: after a malformed first frame from the client the server MUST answer ``NE`` and
  close (spec 3.1.1, 6.3), so that is what the proxy expects, and an ``ACC`` is flagged. A
  server that ends its stream inside a frame has dropped the client (spec 7.3, 7.5): noted, not
  flagged.

How it works: each connection has two pump threads, one per direction, and one `Tracer`. The
client's bytes are decoded by a server-role `chatwire.Connection` and the server's by a
client-role one; each frame decoded on one side is also passed to the other side's connection
(as if sent), so both state machines know the login state and the pending requests (spec 4.3);
server frames that follow the client's ``quit`` are not replayed into the server-role side,
which starts no frame after it (spec 3.1.5), and are checked on the client-role side alone.
Bytes are decoded before they are forwarded, so a reply can never be decoded before the request
it answers. A side that is no longer state-checked gets, at each frame boundary, a fresh
connection primed into a state in which the next header is legal (a ``list-reply`` finds a
``list`` pending), fed the bytes from that boundary on.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import socket
import ssl
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any, TextIO

import chatwire as cw
from chatwire.conformance.wire import canonical_head, describe, explain_header, render
from chatwire.transport import Endpoint, EndpointError, connect, listen, parse_endpoint

__all__ = ["Proxy", "Tracer", "main"]

C2S, S2C = "C->S", "S->C"


class _Side:
    """The decoding state of one direction."""

    def __init__(self, role: cw.Role) -> None:
        self.role = role
        self.conn = cw.Connection(role)
        self.raw = bytearray()  # received bytes from stream offset `base` on
        self.base = 0
        self.consumed = 0
        self.dead = False  # a violation was met: no more decoding
        self.file: tuple[cw.Event, int, Any] | None = None  # head, data bytes, hash
        self.eof = False
        self.free = False  # the other side broke the protocol: no state checks (see above)
        self.reprime = False  # free, at a frame boundary: prime a connection for the next frame
        self.expect_ne = False  # the client's first frame was malformed: NE must answer it
        # `conn` counts `primed` bytes of its own making; they stand for stream offset `origin`.
        self.origin = 0
        self.primed = 0

    def offset(self, position: int) -> int:
        """The stream offset of ``conn``'s byte ``position``."""
        return self.origin + position - self.primed

    def prime(self) -> bool:
        """Replace ``conn`` by a fresh one in which the next header is legal (free mode only),
        fed every byte from the frame boundary on. False: too few bytes yet to tell."""
        raw = bytes(self.raw)
        if len(raw) < cw.HEADER_SIZE and not self.eof:
            return False
        words = raw[: cw.HEADER_SIZE].split()
        code = words[0] if words else b""
        conn = cw.Connection(self.role)
        if self.role is cw.Role.CLIENT:  # server frames
            conn.send(cw.Login(nick="x"))
            if code not in (b"ACC", b"NE"):
                conn.receive_data(cw.encode(cw.Accepted()))
                conn.next_event()
                if code == b"NC":
                    conn.send(cw.NickRequest(nick="x"))
                elif code.isdigit():
                    conn.send(cw.ListRequest())
        elif not code.isdigit():  # client frames other than a login
            conn.receive_data(cw.encode(cw.Login(nick="x")))
            conn.next_event()
            conn.send(cw.Accepted())
        self.origin, self.primed = self.consumed, conn.bytes_received
        if raw:
            conn.receive_data(raw)
        if self.eof:
            conn.receive_data(b"")
        self.conn = conn
        self.reprime = False
        return True


class Tracer:
    """Decodes both directions of one proxied connection and prints every frame.

    Args:
        number: the connection's number in the output.
        out: where lines go.
        lock: shared by every connection so lines never mix.
        raw_limit: bytes of each frame shown.
    """

    def __init__(
        self, number: int, out: TextIO, lock: threading.Lock, *, raw_limit: int = 60
    ) -> None:
        self.number = number
        self.out = out
        self.print_lock = lock
        self.raw_limit = raw_limit
        self.sides = {C2S: _Side(cw.Role.SERVER), S2C: _Side(cw.Role.CLIENT)}
        self.violations: list[str] = []
        self._lock = threading.Lock()

    def say(self, direction: str, text: str) -> None:
        now = time.time()
        stamp = time.strftime("%H:%M:%S", time.localtime(now)) + f".{int(now * 1e6) % 1000000:06d}"
        with self.print_lock:
            print(f"{stamp} [{self.number}] {direction}  {text}", file=self.out, flush=True)

    def feed(self, direction: str, data: bytes) -> None:
        """Bytes seen going in ``direction`` (``b""``: that direction ended)."""
        with self._lock:
            side = self.sides[direction]
            if side.eof:
                return
            if not data:
                side.eof = True
                self.say(direction, "(end of stream)")
            if side.dead:
                return
            side.raw += data
            side.conn.receive_data(data)
            # Decoding one side may unblock the other (an ACC unpauses the client's side).
            self._drain(direction)
            self._drain(S2C if direction == C2S else C2S)
            if (
                direction == C2S
                and not side.free
                and side.conn.state is cw.State.AWAIT_ACC
                and side.conn.buffered
            ):
                # The server-role decoder waits for the answer; the client did not (spec 3.1.1).
                side.dead = True
                self.flag(
                    direction,
                    f"{side.conn.buffered} bytes sent after login before ACC or NE (spec 3.1.1: "
                    "the client MUST NOT send any frame until it has received ACC): "
                    f"{render(side.raw, 40)}; no further decoding this way",
                )
                self._free(S2C)

    def _other(self, direction: str) -> _Side:
        return self.sides[S2C if direction == C2S else C2S]

    def _drain(self, direction: str) -> None:
        side = self.sides[direction]
        while not side.dead:
            if side.reprime and not side.prime():
                return
            try:
                event = side.conn.next_event()
            except cw.RemoteProtocolError as exc:
                self._violation(direction, side, exc)
                return
            if event is cw.NEED_DATA or event is cw.PAUSED or type(event) is cw.ConnectionClosed:
                return
            start, end = side.consumed, side.offset(side.conn.bytes_received)
            raw = bytes(side.raw[start - side.base : end - side.base])
            side.consumed = end
            del side.raw[: end - side.base]
            side.base = end
            if side.expect_ne and isinstance(event, cw.Accepted):
                side.dead = True
                self.flag(
                    direction,
                    "ACC answers a malformed first frame (spec 3.1.1, 6.3: the server answers NE "
                    "and closes); no further decoding this way",
                )
                return
            self._show(direction, side, event, raw)
            if side.free:
                side.reprime = not isinstance(event, cw.File | cw.FileRelay | cw.FileData)
            else:
                self._mirror(direction, event, len(raw))

    def _free(self, direction: str) -> None:
        """The other direction broke the protocol: stop checking ``direction`` against the state
        machine (see the module docstring), and say so."""
        side = self.sides[direction]
        if side.free or side.dead or side.expect_ne:
            return
        side.free = True
        side.reprime = not side.conn.receiving_file
        other = C2S if direction == S2C else S2C
        self.say(
            direction,
            f"-- {other} broke the protocol: {direction} frames are still checked for their "
            "form, no longer against the state machine (spec 4.3)",
        )

    def _show(self, direction: str, side: _Side, event: cw.Event, raw: bytes) -> None:
        if isinstance(event, cw.FileData):
            if side.file is not None:
                head, count, digest = side.file
                digest.update(raw)
                side.file = (head, count + len(raw), digest)
            return
        if isinstance(event, cw.FileEnd):
            if side.file is not None:
                _, count, digest = side.file
                self.say(direction, f"... {count} bytes of file data (sha256 {digest.hexdigest()})")
            side.file = None
            return
        expected = canonical_head(event)
        if expected is not None and raw != expected:  # cannot happen with a strict decoder
            self.flag(direction, f"{describe(event)} not in the form of spec 2.2: {render(raw)}")
        self.say(direction, f"{describe(event)}  [{render(raw, self.raw_limit)}]")
        if isinstance(event, cw.File | cw.FileRelay):
            side.file = (event, 0, hashlib.sha256())

    def _mirror(self, direction: str, event: cw.Event, size: int) -> None:
        # Keep the other direction's state machine in step (see the module docstring).
        other = self._other(direction)
        if other.dead or other.free or isinstance(event, cw.ConnectionClosed):
            return
        if other.conn.state is cw.State.CLOSED:
            # That direction has ended; frames still coming this way were sent before its end
            # was read (relays in flight when a client closes): nothing left to follow there.
            return
        if other.role is cw.Role.SERVER and other.conn.state is cw.State.QUIT:
            # The client has sent quit. Server frames still coming were sent before the server
            # read it: the client-role side checks them against the QUIT rows of table 4.3,
            # while a server-role connection that has read quit starts no frame (spec 3.1.5),
            # so replaying them there would blame the server for frames in flight.
            return
        try:
            if isinstance(event, cw.FileData):
                other.conn.account_file_data(size)
            else:
                other.conn.send(event)
        except cw.LocalProtocolError as exc:
            other.dead = True
            self.flag(direction, f"cannot follow the state any further ({exc}); still forwarding")

    def _violation(self, direction: str, side: _Side, exc: cw.RemoteProtocolError) -> None:
        # The server-role decoder names the reply a malformed first frame gets (spec 6.3).
        first_frame = direction == C2S and not side.free and exc.reply is not None
        side.dead = True
        offset = side.offset(exc.offset) if exc.offset is not None else side.consumed
        if direction == S2C and exc.section == "6.5":
            # A server ends its stream inside a frame only when it drops the client (a SendQ
            # exceeded, spec 7.3; a shutdown, 7.5; after quit, 3.1.5): no rule forbids that.
            self.say(
                direction,
                f"-- the server ended the stream inside a frame (byte {offset}): it dropped "
                "the client (spec 3.1.5, 7.3, 7.5); to the client the frame is truncated (6.5)",
            )
            return
        at = max(offset - side.base, 0)
        shown = bytes(side.raw[max(side.consumed - side.base, 0) : at + 10])
        why = explain_header(side.raw[at : at + 10]) if exc.section in ("2.3", "2.6") else ""
        text = f"{exc.message} (spec {exc.section}, byte {offset}): {render(shown)}"
        if why:
            text += f"; {why}"
        self.flag(direction, text + "; no further decoding this way, bytes still forwarded")
        server = self.sides[S2C]
        if first_frame and server.conn.state is cw.State.LOGIN and not server.dead:
            # spec 3.1.1, 6.3: a malformed first frame is answered NE, then the close
            server.conn.send(cw.Login(nick=""))
            server.expect_ne = True
            self.say(S2C, "-- expecting NE and the close (spec 3.1.1, 6.3)")
        else:
            self._free(S2C if direction == C2S else C2S)

    def flag(self, direction: str, text: str) -> None:
        self.violations.append(f"{direction} {text}")
        self.say(direction, f"!! VIOLATION: {text}")


class Proxy:
    """Accepts clients on ``listen_url`` and connects each to ``upstream_url``.

    Args:
        listen_url: where clients connect (port 0: any free port, see `url`).
        upstream_url: the server.
        out: where the trace goes.
    """

    def __init__(self, listen_url: str, upstream_url: str, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.upstream: Endpoint = parse_endpoint(upstream_url)
        endpoint = parse_endpoint(listen_url)
        self._context = endpoint.server_context() if endpoint.scheme == "tls" else None
        self.sock = listen(endpoint)
        self.sock.settimeout(0.2)
        if endpoint.scheme != "unix":
            endpoint = endpoint.with_port(self.sock.getsockname()[1])
        self.endpoint = endpoint
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._count = 0
        self.tracers: list[Tracer] = []
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        return self.endpoint.url

    def serve_forever(self) -> None:
        """Accept clients until `stop`."""
        try:
            while not self._stop.is_set():
                try:
                    client, address = self.sock.accept()
                except TimeoutError:
                    continue
                except OSError:
                    if self._stop.is_set():
                        break
                    raise
                self._count += 1
                thread = threading.Thread(
                    target=self._serve,
                    args=(client, address, self._count),
                    name=f"proxy {self._count}",
                    daemon=True,
                )
                self._threads.append(thread)
                thread.start()
        finally:
            with contextlib.suppress(OSError):
                self.sock.close()

    def stop(self) -> None:
        self._stop.set()

    def _serve(self, client: socket.socket, address: object, number: int) -> None:
        tracer = Tracer(number, self.out, self._lock)
        self.tracers.append(tracer)
        client.settimeout(None)
        try:
            if self._context is not None:
                client.settimeout(10.0)
                client = self._context.wrap_socket(client, server_side=True)
                client.settimeout(None)
            server = connect(self.upstream)
            server.settimeout(None)
        except (OSError, EndpointError) as exc:
            tracer.say("--", f"client {address}: cannot reach {self.upstream.url}: {exc}")
            with contextlib.suppress(OSError):
                client.close()
            return
        tracer.say("--", f"client {_peer(address)} connected; upstream {self.upstream.url}")
        tls = isinstance(client, ssl.SSLSocket) or isinstance(server, ssl.SSLSocket)
        pumps = [
            threading.Thread(target=_pump, args=(client, server, C2S, tracer, tls), daemon=True),
            threading.Thread(target=_pump, args=(server, client, S2C, tracer, tls), daemon=True),
        ]
        for pump in pumps:
            pump.start()
        for pump in pumps:
            pump.join()
        for sock in (client, server):
            with contextlib.suppress(OSError):
                sock.close()
        tracer.say("--", "connection closed")


def _peer(address: object) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return str(address) or "(unix socket)"


def _pump(
    source: socket.socket, target: socket.socket, direction: str, tracer: Tracer, tls: bool
) -> None:
    """Forward ``source`` to ``target`` until the end of the stream, tracing on the way."""
    while True:
        try:
            data = source.recv(1 << 16)
        except OSError:
            data = b""
        tracer.feed(direction, data)  # decode first: a reply never overtakes its request
        if not data:
            break
        try:
            target.sendall(data)
        except OSError:
            break
    with contextlib.suppress(OSError):
        if tls:
            # No half-close under TLS: end both directions.
            target.close()
            source.close()
        else:
            target.shutdown(socket.SHUT_WR)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chatwire-proxy",
        description="Forward a chatwire connection unchanged and print every frame, flagging "
        "violations of spec/protocol.md.",
    )
    parser.add_argument("--listen", required=True, metavar="URL", help="where clients connect")
    parser.add_argument("--upstream", required=True, metavar="URL", help="the server")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        proxy = Proxy(args.listen, args.upstream)
    except (EndpointError, OSError) as exc:
        print(f"chatwire-proxy: {exc}", file=sys.stderr)
        return 2
    print(f"listening on {proxy.url}, forwarding to {proxy.upstream.url}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        proxy.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
