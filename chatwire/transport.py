"""Endpoints, TLS contexts, listening and connecting: the I/O helpers shared by the reference
server, the reference client and the conformance kit.

This module is an I/O layer *above* the sans-I/O core of chatwire (spec Appendix A); the core
modules never import it. It knows three kinds of endpoint, named by URL:

- ``tcp://HOST:PORT`` (HOST a name, an IPv4 address or ``[IPv6]``; PORT defaults to 1234),
- ``unix:///ABSOLUTE/PATH`` (a Unix domain stream socket),
- ``tls://HOST:PORT`` (TLS 1.2+ over TCP). TLS options go in the query string:
  ``cert=FILE&key=FILE`` (our certificate chain and key: required to listen, optional to connect),
  ``ca=FILE`` (to listen: require client certificates issued by this CA; to connect: trust this CA
  instead of the system's), ``verify=no`` (to connect: do not check the server; for tests only),
  ``name=HOST`` (to connect: the name to check in the server certificate, default HOST).

A bare ``HOST:PORT`` or ``:PORT`` means ``tcp://``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import ssl
import stat
from dataclasses import dataclass, replace
from typing import Literal
from urllib.parse import parse_qs, urlsplit

__all__ = [
    "ALPN",
    "DEFAULT_PORT",
    "Endpoint",
    "EndpointError",
    "connect",
    "cork",
    "listen",
    "parse_endpoint",
]

DEFAULT_PORT = 1234  # spec Appendix A
ALPN = "chatwire/1"  # spec Appendix A and 9

Scheme = Literal["tcp", "unix", "tls"]
_OPTIONS = {"cert", "key", "ca", "verify", "name"}


class EndpointError(ValueError):
    """An endpoint URL or its options are wrong, with a message that says how."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoint:
    """Where to listen or connect. Build one with `parse_endpoint`."""

    scheme: Scheme
    host: str = ""
    port: int = 0
    path: str = ""
    cert: str | None = None
    key: str | None = None
    ca: str | None = None
    verify: bool = True
    name: str | None = None

    @property
    def url(self) -> str:
        """The endpoint as a URL, without its TLS options."""
        if self.scheme == "unix":
            return f"unix://{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    def with_port(self, port: int) -> Endpoint:
        """The same endpoint on another port (after listening on port 0, say)."""
        return replace(self, port=port)

    def server_context(self) -> ssl.SSLContext:
        """The TLS context to listen with: our certificate, and client certificates required
        when ``ca`` is set.

        Raises:
            EndpointError: ``cert`` or ``key`` is missing, or a file cannot be loaded.
        """
        if not self.cert or not self.key:
            raise EndpointError(f"{self.url}: listening with TLS needs ?cert=FILE&key=FILE")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(self.cert, self.key)
            if self.ca:
                context.load_verify_locations(cafile=self.ca)
                context.verify_mode = ssl.CERT_REQUIRED
        except (OSError, ssl.SSLError) as exc:
            raise EndpointError(f"{self.url}: cannot load TLS files: {exc}") from exc
        context.set_alpn_protocols([ALPN])
        return context

    def client_context(self) -> ssl.SSLContext:
        """The TLS context to connect with: the system's CAs or ``ca``, and our certificate if
        ``cert`` and ``key`` are set.

        Raises:
            EndpointError: a file cannot be loaded.
        """
        try:
            context = ssl.create_default_context(cafile=self.ca)
            if self.cert:
                context.load_cert_chain(self.cert, self.key)
        except (OSError, ssl.SSLError) as exc:
            raise EndpointError(f"{self.url}: cannot load TLS files: {exc}") from exc
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if not self.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        context.set_alpn_protocols([ALPN])
        return context


def parse_endpoint(url: str, *, default_port: int = DEFAULT_PORT) -> Endpoint:
    """Parse an endpoint URL (see the module docstring).

    Raises:
        EndpointError: the URL is not one of the accepted forms, with the reason.
    """
    text = url.strip()
    if "://" not in text:
        text = "tcp://" + text  # "host:port", ":port"
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise EndpointError(f"{url!r}: {exc}") from None
    scheme = parts.scheme.lower()
    query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=False)
    unknown = set(query) - _OPTIONS
    if unknown:
        raise EndpointError(f"{url!r}: unknown option(s) {', '.join(sorted(unknown))}")
    options = {k: v[-1] for k, v in query.items()}
    if scheme == "unix":
        path = parts.netloc + parts.path if parts.netloc else parts.path
        if not path:
            raise EndpointError(f"{url!r}: a unix endpoint needs a path: unix:///run/chat.sock")
        if options:
            raise EndpointError(f"{url!r}: unix endpoints take no options")
        return Endpoint(scheme="unix", path=path)
    if scheme not in ("tcp", "tls"):
        raise EndpointError(
            f"{url!r}: unknown scheme {parts.scheme!r}; use tcp://, unix:// or tls://"
        )
    if parts.path not in ("", "/"):
        raise EndpointError(f"{url!r}: a {scheme} endpoint has no path")
    if scheme == "tcp" and options:
        raise EndpointError(f"{url!r}: tcp endpoints take no options (TLS options need tls://)")
    host = parts.hostname or ""
    verify = options.get("verify", "yes").lower()
    if verify not in ("yes", "no", "1", "0", "true", "false"):
        raise EndpointError(f"{url!r}: verify must be yes or no")
    return Endpoint(
        scheme=scheme,  # type: ignore[arg-type]
        host=host,
        port=default_port if port is None else port,
        cert=options.get("cert") or None,
        key=options.get("key") or options.get("cert") or None,
        ca=options.get("ca") or None,
        verify=verify in ("yes", "1", "true"),
        name=options.get("name") or None,
    )


def _remove_stale_unix_socket(path: str) -> None:
    # A socket file left by a dead server blocks bind(); remove it only if nobody answers.
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise EndpointError(f"unix://{path}: exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    else:
        raise EndpointError(f"unix://{path}: another server is listening there")
    finally:
        probe.close()


def listen(endpoint: Endpoint, *, backlog: int = 1024) -> socket.socket:
    """A listening, non-blocking socket for ``endpoint`` (TLS is the caller's next step, with
    ``endpoint.server_context()``). Port 0 picks a free port: read it from ``getsockname()``.

    Raises:
        EndpointError: the endpoint cannot be used (a non-socket file in the way, say).
        OSError: the address is in use or not available.
    """
    if endpoint.scheme == "unix":
        _remove_stale_unix_socket(endpoint.path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(endpoint.path)
            sock.listen(backlog)
        except BaseException:
            sock.close()
            raise
    else:
        host = endpoint.host
        if host in ("", "::"):
            # All interfaces: IPv6 and IPv4 together where the system allows.
            if socket.has_dualstack_ipv6():
                sock = socket.create_server(
                    ("::", endpoint.port),
                    family=socket.AF_INET6,
                    backlog=backlog,
                    dualstack_ipv6=True,
                )
            else:
                sock = socket.create_server(("0.0.0.0", endpoint.port), backlog=backlog)
        else:
            infos = socket.getaddrinfo(
                host, endpoint.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
            family = infos[0][0]
            sock = socket.create_server((host, endpoint.port), family=family, backlog=backlog)
    sock.setblocking(False)
    return sock


def connect(endpoint: Endpoint, *, timeout: float | None = 10.0) -> socket.socket:
    """A connected, blocking socket to ``endpoint``, TLS handshake done for ``tls://``.

    Raises:
        OSError: the connection failed (``ssl.SSLError`` for a failed handshake).
        EndpointError: TLS files cannot be loaded.
    """
    if endpoint.scheme == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(endpoint.path)
        except BaseException:
            sock.close()
            raise
        return sock
    sock = socket.create_connection((endpoint.host or "localhost", endpoint.port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if endpoint.scheme == "tls":
        context = endpoint.client_context()
        try:
            return context.wrap_socket(
                sock, server_hostname=endpoint.name or endpoint.host or "localhost"
            )
        except BaseException:
            sock.close()
            raise
    return sock


def is_disconnect(exc: BaseException) -> bool:
    """True if ``exc`` just means the peer went away (reset, broken pipe, TLS EOF)."""
    if isinstance(exc, ssl.SSLEOFError | ConnectionError):
        return True
    return isinstance(exc, OSError) and exc.errno in (errno.ECONNRESET, errno.EPIPE, errno.ENOTCONN)


_TCP_CORK: int | None = getattr(socket, "TCP_CORK", None)  # Linux only


def cork(sock: socket.socket, on: bool) -> bool:
    """Set ``TCP_CORK`` on a plain TCP socket: while on, the kernel sends only full segments;
    turning it off sends what is held back at once. Returns false (and does nothing) for other
    sockets (Unix, TLS) and where the option does not exist.

    For file data sent with ``os.sendfile`` on a ``TCP_NODELAY`` socket (as `connect` and the
    server make them): every acknowledgement that arrives mid-file otherwise pushes the partial
    segment the last piece left, and on loopback 28 % of the segments of a file relay carried
    53-212 bytes. Cork for the length of the file frame, uncork at its end.
    """
    if _TCP_CORK is None or isinstance(sock, ssl.SSLSocket):
        return False
    if sock.family not in (socket.AF_INET, socket.AF_INET6) or sock.type != socket.SOCK_STREAM:
        return False
    sock.setsockopt(socket.IPPROTO_TCP, _TCP_CORK, on)
    return True
