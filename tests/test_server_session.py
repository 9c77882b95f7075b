"""Tests of chatserver.session: what each event means on the server, through a real server.

(The exchanges themselves are in test_server.py; here: notices, the welcome, error notices,
and the per-session timeouts.)"""

from __future__ import annotations

import chatwire as cw
from tests.support import Peer, running_server


def test_join_leave_and_rename_notices_are_opt_in() -> None:
    with running_server() as server:
        url = server.urls[0]
        ana = Peer.login(url, "ana")
        Peer.login(url, "bob").close()
        ana.send(cw.ListRequest())
        assert ana.expect(cw.ListReply, skip_notices=False)  # no notice came before the reply
    with running_server(notices=True) as server:
        url = server.urls[0]
        ana = Peer.login(url, "ana")
        bob = Peer.login(url, "bob")
        assert ana.expect(cw.Notice, skip_notices=False).text == "bob joined"
        bob.send(cw.NickRequest(nick="rob"))
        bob.expect(cw.NickChanged)
        assert ana.expect(cw.Notice, skip_notices=False).text == "bob is now rob"
        bob.send(cw.Quit())
        assert ana.expect(cw.Notice, skip_notices=False).text == "rob left (quit)"
        bob.expect_closed()  # and no notice of its own leaving


def test_the_welcome_notice_follows_acc() -> None:
    with running_server(welcome="files up to 4 GiB; be nice") as server:
        peer = Peer(server.urls[0])
        peer.send(cw.Login(nick="ana"))
        assert peer.next() == cw.Accepted()
        assert peer.next() == cw.Notice(text="files up to 4 GiB; be nice")


def test_a_protocol_error_after_login_is_explained_in_one_notice() -> None:
    with running_server() as server:
        peer = Peer.login(server.urls[0], "ana")
        peer.send_raw(b"list 5    ")  # list with a size: wrong number of fields
        notice = peer.expect(cw.Notice, skip_notices=False)
        assert notice.text.startswith("closing: protocol error") and "(spec 2.6)" in notice.text
        peer.expect_closed()


def test_the_server_answers_pipelined_requests_from_one_read() -> None:
    with running_server() as server:
        peer = Peer(server.urls[0])
        frames = [peer.conn.send(cw.Login(nick="ana"))]
        peer.send_raw(frames[0])
        peer.expect(cw.Accepted)
        peer.send_raw(b"".join(peer.conn.send(cw.ListRequest()) for _ in range(50)))
        for _ in range(50):
            assert peer.expect(cw.ListReply).nicks == ("ana",)
