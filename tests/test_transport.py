"""Tests of chatwire.transport: endpoint URLs, listening and connecting, TLS contexts."""

from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path

import pytest
import trustme

from chatwire.transport import (
    DEFAULT_PORT,
    Endpoint,
    EndpointError,
    connect,
    cork,
    is_disconnect,
    listen,
    parse_endpoint,
)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("tcp://127.0.0.1:5000", Endpoint(scheme="tcp", host="127.0.0.1", port=5000)),
        ("tcp://example.org", Endpoint(scheme="tcp", host="example.org", port=DEFAULT_PORT)),
        ("tcp://[::1]:7", Endpoint(scheme="tcp", host="::1", port=7)),
        ("tcp://:1234", Endpoint(scheme="tcp", host="", port=1234)),
        ("localhost:99", Endpoint(scheme="tcp", host="localhost", port=99)),
        ("unix:///run/chat.sock", Endpoint(scheme="unix", path="/run/chat.sock")),
        (
            "tls://h:1?cert=c.pem&key=k.pem&ca=ca.pem",
            Endpoint(scheme="tls", host="h", port=1, cert="c.pem", key="k.pem", ca="ca.pem"),
        ),
        (
            "tls://h:1?cert=both.pem",
            Endpoint(scheme="tls", host="h", port=1, cert="both.pem", key="both.pem"),
        ),
        (
            "tls://h:1?verify=no&name=other",
            Endpoint(scheme="tls", host="h", port=1, verify=False, name="other"),
        ),
    ],
)
def test_parse_endpoint(url: str, expected: Endpoint) -> None:
    assert parse_endpoint(url) == expected


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://x:1", "unknown scheme"),
        ("tcp://x:99999", "out of range"),
        ("tcp://x:1?cert=a", "tcp endpoints take no options"),
        ("tls://x:1?colour=blue", "unknown option"),
        ("unix://", "needs a path"),
        ("tcp://x:1/path", "no path"),
        ("tls://x:1?verify=maybe", "verify"),
    ],
)
def test_bad_endpoints_say_why(url: str, why: str) -> None:
    with pytest.raises(EndpointError, match=why):
        parse_endpoint(url)


def test_urls_round_trip() -> None:
    assert parse_endpoint("tcp://[::1]:7").url == "tcp://[::1]:7"
    assert parse_endpoint("unix:///a/b").url == "unix:///a/b"


def echo_once(server: socket.socket) -> threading.Thread:
    def run() -> None:
        server.setblocking(True)
        conn, _ = server.accept()
        with conn:
            conn.sendall(conn.recv(100))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_listen_and_connect_over_tcp_and_unix(tmp_path: Path) -> None:
    for where in (parse_endpoint("tcp://127.0.0.1:0"), parse_endpoint(f"unix://{tmp_path}/s")):
        server = listen(where)
        assert not server.getblocking()
        endpoint = where.with_port(server.getsockname()[1]) if where.scheme == "tcp" else where
        thread = echo_once(server)
        with connect(endpoint, timeout=5) as client:
            client.sendall(b"ping")
            assert client.recv(100) == b"ping"
        thread.join(5)
        server.close()


def test_a_stale_unix_socket_is_replaced_but_a_live_one_is_not(tmp_path: Path) -> None:
    path = tmp_path / "s"
    endpoint = parse_endpoint(f"unix://{path}")
    first = listen(endpoint)
    with pytest.raises(EndpointError, match="another server"):
        listen(endpoint)
    first.close()  # leaves the file behind, like a crashed server
    listen(endpoint).close()
    (tmp_path / "plain").write_text("x")
    with pytest.raises(EndpointError, match="not a socket"):
        listen(parse_endpoint(f"unix://{tmp_path}/plain"))


def test_tls_contexts_and_alpn(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    server_endpoint = parse_endpoint(f"tls://127.0.0.1:0?cert={tmp_path}/server.pem")
    context = server_endpoint.server_context()
    server = listen(server_endpoint)
    port = server.getsockname()[1]

    def run() -> None:
        server.setblocking(True)
        conn, _ = server.accept()
        with context.wrap_socket(conn, server_side=True) as tls:
            tls.sendall(tls.selected_alpn_protocol().encode())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    with connect(
        parse_endpoint(f"tls://127.0.0.1:{port}?ca={tmp_path}/ca.pem"), timeout=5
    ) as client:
        assert isinstance(client, ssl.SSLSocket)
        assert client.recv(100) == b"chatwire/1"
    thread.join(5)
    server.close()
    with pytest.raises(EndpointError, match="needs"):
        parse_endpoint("tls://x:1").server_context()
    with pytest.raises(EndpointError, match="cannot load"):
        parse_endpoint(f"tls://x:1?cert={tmp_path}/missing.pem").server_context()


def test_is_disconnect() -> None:
    assert is_disconnect(ConnectionResetError())
    assert is_disconnect(BrokenPipeError())
    assert not is_disconnect(ValueError())


def test_cork_sets_and_clears_tcp_cork_on_tcp_sockets_only() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    with listener, socket.create_connection(listener.getsockname()) as tcp:
        assert cork(tcp, True) is True
        assert tcp.getsockopt(socket.IPPROTO_TCP, socket.TCP_CORK) == 1
        assert cork(tcp, False) is True
        assert tcp.getsockopt(socket.IPPROTO_TCP, socket.TCP_CORK) == 0
    unix, other = socket.socketpair()
    with unix, other, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        assert cork(unix, True) is False  # no such option: nothing is done
        assert cork(udp, True) is False
