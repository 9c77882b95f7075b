"""The server-side cases: what a chatwire server must do, checked over the network.

Each case below is registered with the section it checks, its level and the sentence of
``spec/protocol.md`` it quotes (see `chatwire.conformance.registry`). A case talks to the
server only through `Probe` connections, so the kit works for any implementation at a URL, and
every frame any probe receives is checked for its exact bytes (spec 2.2) and its legality in
the state (spec 4.3) whatever the case is about: a NUL-padded header fails the first case that
receives one.

Rules the cases follow, so that a conformant server always passes:

- Nicks come from the run's `NickSource` (a random tag and a counter), so cases never collide
  with each other or with people on the server; the fixed nicks of ``spec/vectors/nicks.json``
  are used one connection at a time and released with ``quit``.
- Notices (spec 3.1.8) may arrive wherever a relay may: probes skip them. Relays may arrive
  between a request and its reply (spec 5.5): probes sort replies from relays.
- "Nothing arrives" is watched for the ``--quiet`` time after a point where the server has
  provably processed the frame (another client received its relay).
- Where the spec says "at the moment the server processes the request" and the kit cannot see
  that moment (a dropped connection), the kit polls for up to the ``--wait`` time.
- A user list may hold nicks the kit does not know (other people): the cases check their own
  nicks only.

Cases are grouped by spec section: frame bytes (2), login (3.1.1), list (3.1.2), nick (3.1.3),
files (3.1.4, 3.1.7.1), quit and drops (3.1.5, 7.1), messages and relays (3.1.6, 3.1.7),
malformed input (6, from the spec's vectors), ordering (5), robustness (2.1, 7.2, 7.3) and
what the spec leaves open (informational).
"""

from __future__ import annotations

import hashlib
import itertools
import random
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import chatwire as cw

from .probe import CaseContext, Frame, Probe, skip_unless
from .registry import Failed, Level, Registry, Requirement, Skipped
from .wire import render

__all__ = ["SERVER"]

SERVER = Registry("server")
case = SERVER.case
MUST, SHOULD, MAY = Level.MUST, Level.SHOULD, Level.MAY

EXACT_FORM = "A sender MUST produce exactly this form."
LOGIN_IFF = (
    "It MUST answer `ACC` if and only if the nick is valid (2.8.3) and no logged-in client has "
    "an equal nick (2.8.4)."
)
LOGIN_REFUSED = (
    "The server MUST answer a `login` with exactly one frame, `ACC` or `NE`. It MUST answer `ACC` "
    "if and only if the nick is valid (2.8.3) ... After `NE` the server MUST close the "
    "connection."
)
NICK_ANSWER = (
    "The server MUST answer every `nick` with exactly one frame: `NC` if the new nick is valid "
    "(2.8.3) and no *other* logged-in client has an equal nick (2.8.4), `NE` otherwise."
)
RELAY_ORDER = "It MUST send relays to every client in the order it accepted them."
RELAY_TO_ALL = (
    "It MUST send the relay of each frame it accepts (5.3) to every client that is logged in at "
    "that moment, other than the sender"
)
REPLY_ORDER = (
    "The server processes each client's frames in the order received and MUST send the replies "
    "(`ACC`/`NE` to `login`; `NC`/`NE` to `nick`; `list-reply` to `list`) in the order of the "
    "requests."
)
LOGOUT = (
    "When a client quits, its connection drops, or the server closes it for any reason, the "
    "server MUST free its nick, drop it from the user list, stop relaying to it, and discard any "
    "file it was sending."
)
STOP = (
    "A receiver that meets a malformed frame MUST stop interpreting the stream and close the "
    "connection."
)


# --- Helpers ----------------------------------------------------------------------------------


def _exact(frame: Frame, expected: bytes, what: str) -> None:
    if frame.raw != expected:
        raise Failed(f"{what}: {render(expected)}", f"{render(frame.raw)} ({frame})")


def _quit(probe: Probe) -> None:
    probe.send(cw.Quit())
    probe.expect_close(f"the server to close the connection of {probe.label} after quit")


def _check_list(
    nicks: Sequence[str], present: Sequence[str], absent: Sequence[str], who: str
) -> str | None:
    """Why ``nicks`` (a list reply seen by ``who``) is wrong, or ``None``."""
    keys = [cw.nick_key(n) for n in nicks]
    for nick in present:
        count = keys.count(cw.nick_key(nick))
        if count == 0:
            return f"the list sent to {who} lacks {nick!r}: {list(nicks)!r}"
        if count > 1:
            return f"the list sent to {who} names {nick!r} {count} times: {list(nicks)!r}"
        if nick not in nicks:
            return f"the list sent to {who} does not show {nick!r} as written: {list(nicks)!r}"
    for nick in absent:
        if cw.nick_key(nick) in keys:
            return f"the list sent to {who} still names {nick!r}: {list(nicks)!r}"
    return None


def _list_holds(probe: Probe, present: Sequence[str], absent: Sequence[str], what: str) -> None:
    problem = _check_list(probe.list_nicks(), present, absent, probe.label)
    if problem is not None:
        raise Failed(what, problem)


def _eventually_listed(
    ctx: CaseContext, probe: Probe, present: Sequence[str], absent: Sequence[str], what: str
) -> None:
    """Poll ``probe``'s list until it holds ``present`` and not ``absent`` (for changes whose
    moment the kit cannot see, such as a dropped connection), for up to the wait time."""
    deadline = time.monotonic() + ctx.timeout()
    while True:
        problem = _check_list(probe.list_nicks(), present, absent, probe.label)
        if problem is None:
            return
        if time.monotonic() > deadline:
            raise Failed(what, f"{problem}, {ctx.options.wait:g} s later")
        ctx.sleep(0.05)


def _login_eventually(ctx: CaseContext, nick: str, what: str) -> Probe:
    """Log in as ``nick``, retrying while the answer is NE, for up to the wait time."""
    deadline = time.monotonic() + ctx.timeout()
    while True:
        probe = ctx.connect(nick)
        frame = probe.login(nick)
        if isinstance(frame.event, cw.Accepted):
            return probe
        probe.close()
        if time.monotonic() > deadline:
            raise Failed(what, f"NE to every login as {nick!r} for {ctx.options.wait:g} s")
        ctx.sleep(0.05)


def _file_data(size: int, seed: int = 7) -> bytes:
    """``size`` bytes that hold every byte value and header look-alikes (``msg 5     ``)."""
    head = bytes(range(256)) + b"msg 5     hello" + b"\x00" * 10 + b"ACC       " + b"\r\n"
    if size <= len(head):
        return head[:size]
    return head + random.Random(seed).randbytes(size - len(head))


def _all_others_get(
    receivers: Sequence[Probe], expect: Callable[[Probe], object], sender: Probe
) -> None:
    for receiver in receivers:
        expect(receiver)
    sender.quiet(what=f"no relay of {sender.label}'s own frame back to {sender.label}")


# --- 2. Frames: the exact bytes of every server frame ------------------------------------------


@case(
    "acc-bytes",
    "2.2",
    MUST,
    EXACT_FORM,
    title="ACC is the bytes 'ACC' and 7 spaces",
    also=("3.1.1",),
)
def acc_bytes(ctx: CaseContext) -> None:
    probe = ctx.connect()
    frame = probe.login(ctx.nick())
    _exact(frame, b"ACC       ", "ACC to a valid, free nick")


@case(
    "ne-bytes",
    "2.2",
    MUST,
    EXACT_FORM,
    title="NE is the bytes 'NE' and 8 spaces",
    also=("3.1.1",),
)
def ne_bytes(ctx: CaseContext) -> None:
    first = ctx.login()
    assert first.nick is not None
    second = ctx.connect()
    frame = second.login(first.nick)
    _exact(frame, b"NE        ", f"NE to a login as the taken nick {first.nick!r}")


@case(
    "nc-bytes",
    "2.2",
    MUST,
    EXACT_FORM,
    title="NC is the bytes 'NC' and 8 spaces",
    also=("3.1.3",),
)
def nc_bytes(ctx: CaseContext) -> None:
    probe = ctx.login()
    new = ctx.nick()
    probe.send(cw.NickRequest(nick=new))
    _exact(probe.reply(f"NC to a nick request for the free {new!r}"), b"NC        ", "NC")


@case(
    "list-reply-bytes",
    "2.2",
    MUST,
    EXACT_FORM,
    title="a list reply is a bare size header, then nicks joined by line feeds",
    also=("2.8.1", "2.8.7", "3.1.2"),
)
def list_reply_bytes(ctx: CaseContext) -> None:
    ana = ctx.login()
    bob = ctx.login(ctx.nick(tail="ã"))  # a nick of more bytes than characters (spec 2.8.1)
    assert ana.nick and bob.nick
    ana.send(cw.ListRequest())
    frame = ana.reply("a list-reply")
    if not isinstance(frame.event, cw.ListReply):
        raise Failed("a list-reply", str(frame))
    payload = frame.raw[cw.HEADER_SIZE :]
    header = frame.raw[: cw.HEADER_SIZE]
    if header != str(len(payload)).encode().ljust(cw.HEADER_SIZE):
        raise Failed(f"the header {render(str(len(payload)).encode().ljust(10))}", render(header))
    problem = _check_list(frame.event.nicks, [ana.nick, bob.nick], [], ana.label)
    if problem:
        raise Failed(f"a list naming {ana.nick!r} and {bob.nick!r}", problem)


@case(
    "msg-relay-bytes",
    "2.2",
    MUST,
    EXACT_FORM,
    title="a msg-relay is 'msg <nick_size> <text_size>', nick, text",
    also=("3.1.7.2",),
)
def msg_relay_bytes(ctx: CaseContext) -> None:
    ana, bob = ctx.login(), ctx.login()
    assert ana.nick
    ana.send(cw.Message(text="hello"))
    nick = ana.nick.encode()
    expected = f"msg {len(nick)} 5".encode().ljust(10) + nick + b"hello"
    _exact(bob.relay(f"the relay of {ana.label}'s msg"), expected, "the msg-relay")


@case(
    "file-relay-bytes",
    "2.2",
    MUST,
    EXACT_FORM,
    title="a file-relay is 'file <nick_size> <name_size>', nick, name, size header, data",
    also=("3.1.4", "3.1.7.1"),
)
def file_relay_bytes(ctx: CaseContext) -> None:
    ana, bob = ctx.login(), ctx.login()
    assert ana.nick
    ana.send_file("a.txt", b"abc")
    nick = ana.nick.encode()
    head = f"file {len(nick)} 5".encode().ljust(10) + nick + b"a.txt" + b"3".ljust(10)
    frame = bob.expect_file(ana.nick, "a.txt", b"abc")
    _exact(frame, head, "the head of the file-relay")


@case(
    "sizes-count-bytes",
    "2.8.1",
    MUST,
    "A sender MUST set each size field to the number of bytes of its part",
    title="sizes of a relay of UTF-8 text count bytes, not characters",
    also=("2.2", "3.1.7.2"),
)
def sizes_count_bytes(ctx: CaseContext) -> None:
    ana = ctx.login(ctx.nick(tail="çã"))
    bob = ctx.login()
    assert ana.nick
    text = "ção ✓ 😀"
    ana.send(cw.Message(text=text))
    nick, data = ana.nick.encode(), text.encode()
    expected = f"msg {len(nick)} {len(data)}".encode().ljust(10) + nick + data
    _exact(bob.relay("the relay of a UTF-8 message"), expected, "the msg-relay")


@case(
    "largest-msg-relay",
    "2.2",
    MUST,
    EXACT_FORM,
    title="a 9-byte nick's 9999-byte text is relayed as 'msg 9 9999' (a full header)",
    also=("2.7", "3.1.7.2"),
)
def largest_msg_relay(ctx: CaseContext) -> None:
    ana = ctx.login(ctx.nick(size=cw.NICK_MAX))
    bob = ctx.login()
    assert ana.nick
    unit = "ção-✓-😀 line\n"
    text_str = unit * (cw.TEXT_MAX // len(unit.encode()))
    text_str += "x" * (cw.TEXT_MAX - len(text_str.encode()))
    ana.send(cw.Message(text=text_str))
    frame = bob.relay("the relay of a 9999-byte message")
    _exact(frame, b"msg 9 9999" + ana.nick.encode() + text_str.encode(), "the largest msg-relay")


@case(
    "largest-file-name",
    "2.2",
    MUST,
    EXACT_FORM,
    title="a 255-byte file name from a 9-byte nick is relayed as 'file 9 255'",
    also=("2.7", "3.1.4", "3.1.7.1"),
)
def largest_file_name(ctx: CaseContext) -> None:
    ana = ctx.login(ctx.nick(size=cw.NICK_MAX))
    bob = ctx.login()
    assert ana.nick
    name = "ção " * 40
    name += "n" * (cw.NAME_MAX - 4 - len(name.encode())) + ".bin"
    ana.send_file(name, b"data")
    frame = bob.expect_file(ana.nick, name, b"data")
    if frame.raw[:10] != b"file 9 255":
        raise Failed("the header 'file 9 255'", render(frame.raw[:10]))


@case(
    "empty-msg",
    "3.1.7",
    MUST,
    RELAY_TO_ALL,
    title="an empty msg (allowed, spec 3.1.6) is relayed with text_size 0",
    also=("3.1.6", "3.1.7.2", "5.3"),
)
def empty_msg(ctx: CaseContext) -> None:
    ana, bob = ctx.login(), ctx.login()
    assert ana.nick
    ana.send(cw.Message(text=""))
    nick = ana.nick.encode()
    _exact(
        bob.relay("the relay of an empty msg"),
        f"msg {len(nick)} 0".encode().ljust(10) + nick,
        "the msg-relay of the empty text",
    )


@case(
    "empty-file",
    "3.1.7",
    MUST,
    RELAY_TO_ALL,
    title="an empty file (allowed, spec 3.1.4) is relayed, ending with the header '0'",
    also=("3.1.4", "3.1.7.1", "5.3"),
)
def empty_file(ctx: CaseContext) -> None:
    ana, bob = ctx.login(), ctx.login()
    assert ana.nick
    ana.send_file("empty", b"")
    frame = bob.expect_file(ana.nick, "empty", b"")
    if frame.raw[-10:] != b"0         ":
        raise Failed("the second header '0' and 9 spaces", render(frame.raw[-10:]))


# --- 3.1.1 Login ----------------------------------------------------------------------------


@case("login-taken", "3.1.1", MUST, LOGIN_IFF, title="a login as a nick in use is answered NE")
def login_taken(ctx: CaseContext) -> None:
    ana = ctx.login()
    assert ana.nick
    other = ctx.connect()
    frame = other.login(ana.nick)
    if not isinstance(frame.event, cw.Refused):
        raise Failed(f"NE to a second login as {ana.nick!r}", str(frame))
    _list_holds(ana, [ana.nick], [], f"{ana.nick!r} still listed once")


@case(
    "login-ne-closes",
    "3.1.1",
    MUST,
    "After `NE` the server MUST close the connection.",
    title="the server closes the connection after NE to a login",
)
def login_ne_closes(ctx: CaseContext) -> None:
    probe = ctx.connect()
    probe.send(cw.Login(nick="a b"))
    probe.expect_refused_and_closed("NE to the login of the invalid nick 'a b'")


def _equal_variant(ctx: CaseContext, first: str, second: str) -> tuple[str, str]:
    # Prefix both nicks with a fresh tag when they stay valid, equal and short enough: then
    # they cannot collide with anyone. Otherwise use them as they are.
    prefix = ctx.nick()
    a, b = prefix + first, prefix + second
    if (
        len(a.encode()) <= cw.NICK_MAX
        and len(b.encode()) <= cw.NICK_MAX
        and cw.is_valid_nick(a)
        and cw.is_valid_nick(b)
        and (cw.nick_key(a) == cw.nick_key(b)) == (cw.nick_key(first) == cw.nick_key(second))
    ):
        return a, b
    return first, second


@case(
    "login-equal-nicks",
    "3.1.1",
    MUST,
    LOGIN_IFF,
    title="a login equal to a nick in use (case, NFKC) is refused (nicks.json 'equal')",
    timeout=30.0,
    also=("2.8.4",),
)
def login_equal_nicks(ctx: CaseContext) -> str:
    pairs = ctx.vectors("nicks")["equal"]
    failures: list[str] = []
    for first, second in pairs:
        a, b = _equal_variant(ctx, first, second)
        holder = _login_eventually(ctx, a, f"ACC to {a!r}")
        probe = ctx.connect()
        frame = probe.login(b)
        if not isinstance(frame.event, cw.Refused):
            failures.append(f"{b!r} while {a!r} is logged in: {frame.name}")
        probe.close()
        _quit(holder)
    if failures:
        raise Failed("NE to every login equal to a logged-in nick", "; ".join(failures))
    return f"{len(pairs)} pairs"


@case(
    "login-different-nicks",
    "3.1.1",
    MUST,
    LOGIN_IFF,
    title="nicks that only look alike are both accepted (nicks.json 'different')",
    timeout=30.0,
    also=("2.8.4",),
)
def login_different_nicks(ctx: CaseContext) -> str:
    pairs = ctx.vectors("nicks")["different"]
    failures: list[str] = []
    for first, second in pairs:
        holder = _login_eventually(ctx, first, f"ACC to {first!r}")
        probe = ctx.connect()
        frame = probe.login(second)
        if not isinstance(frame.event, cw.Accepted):
            failures.append(f"{second!r} while {first!r} is logged in: {frame.name}")
        else:
            _quit(probe)
        _quit(holder)
    if failures:
        raise Failed("ACC to nicks that differ from every logged-in nick", "; ".join(failures))
    return f"{len(pairs)} pairs"


@case(
    "login-valid-nicks",
    "3.1.1",
    MUST,
    LOGIN_IFF,
    title="every valid nick of nicks.json is accepted",
    timeout=30.0,
    also=("2.8.3",),
)
def login_valid_nicks(ctx: CaseContext) -> str:
    valid = [entry["nick"] for entry in ctx.vectors("nicks")["valid"]]
    for nick in valid:
        _quit(_login_eventually(ctx, nick, f"ACC to the valid nick {nick!r}"))
    return f"{len(valid)} nicks"


@case(
    "login-invalid-nicks",
    "3.1.1",
    MUST,
    LOGIN_REFUSED,
    title="every invalid nick of nicks.json is refused with NE, then the connection closes",
    timeout=30.0,
    also=("2.8.3",),
)
def login_invalid_nicks(ctx: CaseContext) -> str:
    invalid = [entry["nick"] for entry in ctx.vectors("nicks")["invalid"]]
    probes: list[tuple[str, Probe]] = []
    for nick in invalid:
        try:
            data = nick.encode("utf-8")
        except UnicodeEncodeError:
            continue
        probe = ctx.connect()
        # Longer than NICK_MAX: a size out of range, still answered NE (spec 3.1.1, 6.3).
        probe.send_raw(str(len(data)).encode().ljust(10) + data, note=f"login {nick!r}")
        probes.append((nick, probe))
    for nick, probe in probes:
        probe.expect_refused_and_closed(f"NE to the login of the invalid nick {nick!r}")
    return f"{len(probes)} nicks"


@case(
    "login-ne-linger",
    "3.1.1",
    SHOULD,
    "A server SHOULD therefore shut down its sending side after `NE` and read and discard "
    "input for a short time (one second in the reference server) before closing.",
    title="NE survives when the client wrote more before reading it (no reset)",
)
def login_ne_linger(ctx: CaseContext) -> None:
    ana = ctx.login()
    assert ana.nick
    probe = ctx.connect()
    burst = cw.encode(cw.Login(nick=ana.nick)) + cw.encode(cw.Message(text="x" * 9000)) * 8
    probe.send_raw(burst, note=f"login {ana.nick!r} and 72 KB more, without waiting")
    ctx.sleep(0.3)  # let any reset arrive before we read
    try:
        frame = probe.reply("NE, readable despite the unread input")
    except Failed as exc:
        if probe.reset:
            raise Failed(
                "NE, then a lingering close", "the connection was reset before NE was read"
            ) from exc
        raise
    if not isinstance(frame.event, cw.Refused):
        raise Failed("NE", str(frame))


@case(
    "no-relay-before-login",
    "3.1.7",
    MUST,
    "The server MUST NOT send a relay or a notice on a connection before it has sent `ACC` on it.",
    title="a connected client that has not logged in receives nothing",
    also=("3.1.8", "4.3"),
)
def no_relay_before_login(ctx: CaseContext) -> None:
    waiting = ctx.connect("waiting")
    ana, bob = ctx.login(), ctx.login()
    assert ana.nick
    ana.send(cw.Message(text="not for the waiting client"))
    bob.expect_message(ana.nick, "not for the waiting client")
    ana.send_file("f.txt", b"file")
    bob.expect_file(ana.nick, "f.txt", b"file")
    # The decoder refuses any frame before ACC (spec 4.3): a relay or notice here fails.
    waiting.drain(ctx.options.quiet)
    if waiting.received:
        raise Failed("nothing before login", f"received {waiting.received[0]}")
    nick = ctx.nick()
    frame = waiting.login(nick)
    if not isinstance(frame.event, cw.Accepted):
        raise Failed(f"ACC as the first frame after the login of {nick!r}", str(frame))


@case(
    "login-timeout",
    "7.2",
    SHOULD,
    "A server SHOULD close a connection that has not completed login within a bounded time",
    title="a connection that never logs in is closed (give --login-timeout)",
    timeout=600.0,
)
def login_timeout(ctx: CaseContext) -> None:
    limit = ctx.options.login_timeout
    skip_unless(limit is not None, "give --login-timeout SECONDS to check it")
    assert limit is not None
    probe = ctx.connect()
    probe.expect_close(
        f"the server to close a silent connection within {limit:g} s", timeout=limit + 3
    )


# --- 3.1.2 List -------------------------------------------------------------------------------

LIST_ALL = (
    "The server MUST answer every `list` with one `list-reply` whose `user_list` (2.8.7) names "
    "every logged-in client exactly once, the requester included, as their nicks are at the "
    "moment the server processes the request."
)


@case("list-everyone", "3.1.2", MUST, LIST_ALL, title="every client's list names all, once")
def list_everyone(ctx: CaseContext) -> None:
    probes = ctx.crowd(3)
    nicks = [p.nick for p in probes if p.nick]
    for probe in probes:
        _list_holds(probe, nicks, [], "a list naming every logged-in client once")


@case("list-join", "3.1.2", MUST, LIST_ALL, title="a client that logs in is listed at once")
def list_join(ctx: CaseContext) -> None:
    ana = ctx.login()
    assert ana.nick
    _list_holds(ana, [ana.nick], [], "a list naming the requester")
    for _ in range(2):
        newcomer = ctx.login()
        assert newcomer.nick
        _list_holds(ana, [ana.nick, newcomer.nick], [], "the newcomer listed after its ACC")
        _list_holds(newcomer, [ana.nick, newcomer.nick], [], "the newcomer's list")


@case(
    "list-rename",
    "3.1.2",
    MUST,
    LIST_ALL,
    title="after NC the list shows the new nick only",
    also=("3.1.3",),
)
def list_rename(ctx: CaseContext) -> None:
    ana, bob = ctx.login(), ctx.login()
    assert ana.nick and bob.nick
    old, new = ana.nick, ctx.nick()
    if not isinstance(ana.change_nick(new), cw.NickChanged):
        raise Failed(f"NC to the change to the free nick {new!r}", "NE")
    for probe in (ana, bob):
        _list_holds(probe, [new, bob.nick], [old], f"{new!r} listed, {old!r} gone")


@case(
    "list-quit",
    "7.1",
    MUST,
    LOGOUT,
    title="a client that quit leaves the list",
    also=("3.1.2", "3.1.5"),
)
def list_quit(ctx: CaseContext) -> None:
    ana, bob = ctx.login(), ctx.login()
    assert ana.nick and bob.nick
    _quit(bob)
    _eventually_listed(ctx, ana, [ana.nick], [bob.nick], f"{bob.nick!r} gone after its quit")


@case(
    "list-drop",
    "7.1",
    MUST,
    LOGOUT,
    title="a client that dropped leaves the list",
    also=("3.1.2", "3.1.5"),
)
def list_drop(ctx: CaseContext) -> None:
    ana, bob = ctx.login(), ctx.login()
    assert ana.nick and bob.nick
    bob.drop()
    _eventually_listed(ctx, ana, [ana.nick], [bob.nick], f"{bob.nick!r} gone after its drop")


# --- 3.1.3 Nick -------------------------------------------------------------------------------


@case("nick-accepted", "3.1.3", MUST, NICK_ANSWER, title="a change to a free nick gets NC")
def nick_accepted(ctx: CaseContext) -> None:
    ana = ctx.login()
    new = ctx.nick(tail="é")
    event = ana.change_nick(new)
    if not isinstance(event, cw.NickChanged):
        raise Failed(f"NC to the change to the free, valid nick {new!r}", "NE")


@case("nick-taken", "3.1.3", MUST, NICK_ANSWER, title="a change to a nick in use gets NE")
def nick_taken(ctx: CaseContext) -> None:
    ana, bob = ctx.login(), ctx.login()
    assert ana.nick and bob.nick
    event = ana.change_nick(bob.nick)
    if not isinstance(event, cw.Refused):
        raise Failed(
            f"NE to the change to {bob.nick!r}, in use by another client",
            f"NC: the change to the nick of {bob.label} was accepted",
        )
    _list_holds(bob, [ana.nick, bob.nick], [], "both nicks unchanged after the refusal")


@case(
    "nick-taken-other-case",
    "3.1.3",
    MUST,
    NICK_ANSWER,
    title="a change to another client's nick in other case gets NE",
    also=("2.8.4",),
)
def nick_taken_other_case(ctx: CaseContext) -> None:
    ana, bob = ctx.login(), ctx.login()
    assert bob.nick
    wanted = bob.nick.upper()
    event = ana.change_nick(wanted)
    if not isinstance(event, cw.Refused):
        raise Failed(
            f"NE to the change to {wanted!r}, equal to {bob.nick!r} (spec 2.8.4)",
            f"NC: the change to {wanted!r} was accepted while {bob.nick!r} is logged in",
        )


@case(
    "nick-own-case",
    "3.1.3",
    MUST,
    NICK_ANSWER,
    title="a change of case of one's own nick gets NC (no *other* client has it)",
    also=("2.8.4",),
)
def nick_own_case(ctx: CaseContext) -> None:
    ana = ctx.login()
    assert ana.nick
    wanted = ana.nick.upper()
    event = ana.change_nick(wanted)
    if not isinstance(event, cw.NickChanged):
        raise Failed(f"NC to the change of {ana.nick!r} to {wanted!r}", "NE")
    _list_holds(ana, [wanted], [], f"the list showing {wanted!r} as written")


@case(
    "nick-invalid",
    "3.1.3",
    MUST,
    NICK_ANSWER,
    title="changes to invalid nicks get NE, in order, and the connection stays open",
    also=("2.8.3",),
)
def nick_invalid(ctx: CaseContext) -> str:
    ana = ctx.login()
    assert ana.nick
    invalid = [
        entry["nick"]
        for entry in ctx.vectors("nicks")["invalid"]
        if len(entry["nick"].encode("utf-8", "replace")) <= cw.NICK_MAX
    ]
    for nick in invalid:
        ana.send(cw.NickRequest(nick=nick))
    for nick in invalid:
        frame = ana.reply(f"NE to the change to the invalid nick {nick!r}")
        if not isinstance(frame.event, cw.Refused):
            raise Failed(f"NE to the change to the invalid nick {nick!r}", str(frame))
    _list_holds(ana, [ana.nick], [], "the old nick still in force")
    return f"{len(invalid)} nicks"


@case(
    "nick-refused-keeps-old",
    "3.1.3",
    MUST,
    "After sending `NE` to a `nick` the server MUST keep the connection open and the client's "
    "nick unchanged.",
    title="after NE to a nick change, relays still carry the old nick",
)
def nick_refused_keeps_old(ctx: CaseContext) -> None:
    ana, bob = ctx.login(), ctx.login()
    assert ana.nick and bob.nick
    if not isinstance(ana.change_nick(bob.nick), cw.Refused):
        raise Failed(
            f"NE to the change to {bob.nick!r}",
            f"NC: the change to the nick of {bob.label} was accepted",
        )
    ana.send(cw.Message(text="still me"))
    bob.expect_message(ana.nick, "still me", f"the relay sent by the old nick {ana.nick!r}")


@case(
    "nick-change-relays",
    "3.1.3",
    MUST,
    "After sending `NC` the server MUST hold the new nick as the client's: in the relay of every "
    "`msg` and `file` from this client that it accepts after processing the request, ... so that "
    "the old nick is free unless it is equal to the new one (2.8.4).",
    title="relays after NC carry the new nick; the old nick can be taken",
    also=("5.3",),
)
def nick_change_relays(ctx: CaseContext) -> None:
    ana, bob = ctx.login(), ctx.login()
    assert ana.nick
    old, new = ana.nick, ctx.nick()
    ana.send(cw.Message(text="before"))
    ana.send(cw.NickRequest(nick=new))
    ana.send(cw.Message(text="after"))
    ana.send_file("after.txt", b"data")
    if not isinstance(ana.reply(f"NC to {new!r}").event, cw.NickChanged):
        raise Failed(f"NC to the change to the free nick {new!r}", "NE")
    bob.expect_message(old, "before", "the message sent before the change, with the old nick")
    bob.expect_message(new, "after", "the message sent after the change, with the new nick")
    bob.expect_file(new, "after.txt", b"data", "the file sent after the change, new nick")
    _login_eventually(ctx, old, f"ACC to a login as the freed nick {old!r}")


# --- 3.1.4 and 3.1.7.1 Files ----------------------------------------------------------------


@case(
    "file-to-all-others",
    "3.1.7",
    MUST,
    RELAY_TO_ALL,
    title="a file reaches every other client byte-identical, never its sender",
    also=("2.8.8", "3.1.4", "3.1.7.1", "5.3"),
)
def file_to_all_others(ctx: CaseContext) -> None:
    ana, *others = ctx.crowd(4)
    assert ana.nick
    data = _file_data(100_000)
    ana.send_file("report.pdf", data)
    _all_others_get(others, lambda p: p.expect_file(ana.nick or "", "report.pdf", data), ana)


@case(
    "file-names",
    "3.1.7.1",
    MUST,
    "The server MUST relay `name`, `file_size` and `data` byte for byte as the sender sent them.",
    title="valid file names of every kind are relayed unchanged",
    also=("2.8.5", "3.1.4"),
)
def file_names(ctx: CaseContext) -> None:
    ana, bob = ctx.login(), ctx.login()
    assert ana.nick
    names = [".hidden", "ção ✓.txt", "a b c", "CON", "李小龙.mp3", "-rf", "...x", "x" * 255]
    for name in names:
        ana.send_file(name, name.encode())
    for name in names:
        bob.expect_file(ana.nick, name, name.encode())


@case(
    "file-store-and-forward",
    "3.1.4",
    MUST,
    "The server MUST NOT relay any of the file before it has received all of its data "
    "(store-and-forward, 5.4).",
    title="nothing of a file is relayed while its data is still arriving",
    also=("5.4",),
)
def file_store_and_forward(ctx: CaseContext) -> None:
    ana, bob = ctx.login(), ctx.login()
    assert ana.nick
    data = _file_data(64 * 1024)
    ana.send(cw.File(name="slow.bin", size=len(data)))
    ana.send(cw.FileData(data=data[:-1000]))
    bob.quiet(
        max(ctx.options.quiet * 2, 0.5),
        what="nothing relayed while the file's last 1000 bytes have not arrived",
    )
    ana.send(cw.FileData(data=data[-1000:]))
    bob.expect_file(ana.nick, "slow.bin", data)


@case(
    "file-sender-drops",
    "7.1",
    MUST,
    LOGOUT,
    title="a file cut short by its sender's drop reaches no one",
    also=("3.1.4", "5.4"),
)
def file_sender_drops(ctx: CaseContext) -> None:
    ana, bob, carol = ctx.login(), ctx.login(), ctx.login()
    assert carol.nick
    ana.send(cw.File(name="cut.bin", size=10_000))
    ana.send(cw.FileData(data=b"x" * 5_000))
    ctx.sleep(0.1)
    ana.drop()
    ctx.sleep(ctx.options.quiet)
    carol.send(cw.Message(text="after the drop"))
    bob.expect_message(
        carol.nick, "after the drop", f"{carol.label}'s message, and nothing of the file"
    )


@case(
    "file-large",
    "2.8.8",
    MUST,
    "A server MUST relay `data` exactly as it received it, whatever its bytes hold: a header "
    "look-alike inside it is data, not a frame.",
    title="a large file (--large-file, 32 MiB) reaches two clients byte-identical",
    timeout=90.0,
    also=("3.1.4", "3.1.7.1"),
)
def file_large(ctx: CaseContext) -> str:
    size = ctx.options.large_file
    data = random.Random(size).randbytes(size)
    ana, bob, carol = ctx.login(), ctx.login(), ctx.login()
    assert ana.nick
    try:
        ana.send_file("large.bin", data)
    except Failed as exc:
        ana.drain(0.5)
        if ana.eof:
            raise Skipped(
                f"the server closed the connection while receiving a file of {size} bytes: it "
                "applies a lower file limit (spec 3.1.4 allows it); choose --large-file"
            ) from exc
        raise
    started = time.monotonic()
    bob.expect_file(ana.nick, "large.bin", data)
    carol.expect_file(ana.nick, "large.bin", data)
    return f"{size} bytes relayed in {time.monotonic() - started:.1f} s"


# --- 3.1.5 Quit, dropped connections, 7.1 ----------------------------------------------------


@case(
    "quit-closes",
    "3.1.5",
    MUST,
    "On `quit` the server MUST log the client out (its nick is free, it leaves the list, "
    "nothing is relayed to it any more) and close the connection.",
    title="quit is not answered; the server closes the connection",
)
def quit_closes(ctx: CaseContext) -> None:
    ana = ctx.login()
    ana.send(cw.Quit())
    # The decoder is in state QUIT: any reply is refused (spec 4.3), relays are tolerated.
    ana.expect_close("the server to close the connection after quit, without a reply")


@case(
    "quit-frees-nick",
    "7.1",
    MUST,
    LOGOUT,
    title="the nick of a client that quit is free",
    also=("3.1.5",),
)
def quit_frees_nick(ctx: CaseContext) -> None:
    ana = ctx.login()
    assert ana.nick
    _quit(ana)
    _login_eventually(ctx, ana.nick.upper(), f"ACC to a login as {ana.nick.upper()!r}")


@case(
    "drop-frees-nick",
    "7.1",
    MUST,
    LOGOUT,
    title="the nick of a client that closed without quit is free",
    also=("3.1.5",),
)
def drop_frees_nick(ctx: CaseContext) -> None:
    ana = ctx.login()
    assert ana.nick
    ana.drop()
    _login_eventually(ctx, ana.nick, f"ACC to a login as the dropped {ana.nick!r}")


@case(
    "reset-frees-nick",
    "7.1",
    MUST,
    LOGOUT,
    title="the nick of a client whose connection was reset is free",
    also=("3.1.5",),
)
def reset_frees_nick(ctx: CaseContext) -> None:
    skip_unless(ctx.endpoint.scheme != "unix", "a Unix socket cannot be reset")
    ana, bob = ctx.login(), ctx.login()
    assert ana.nick and bob.nick
    ana.drop(reset=True)
    _eventually_listed(ctx, bob, [bob.nick], [ana.nick], f"{ana.nick!r} gone after the reset")
    _login_eventually(ctx, ana.nick, f"ACC to a login as {ana.nick!r}")


@case(
    "drop-mid-frame",
    "7.1",
    MUST,
    LOGOUT,
    title="a client dropping inside a msg is logged out",
    also=("3.1.5", "6.5"),
)
def drop_mid_frame(ctx: CaseContext) -> None:
    ana, bob, carol = ctx.login(), ctx.login(), ctx.login()
    assert ana.nick and carol.nick
    ana.send_raw(b"msg 20    only half", note="half of a msg frame")
    ctx.sleep(0.1)
    ana.drop()
    _eventually_listed(ctx, bob, [bob.nick or ""], [ana.nick], f"{ana.nick!r} logged out")
    carol.send(cw.Message(text="next"))
    bob.expect_message(carol.nick, "next", f"{carol.label}'s message, nothing of the cut frame")


# --- 3.1.6, 3.1.7 Messages and relays --------------------------------------------------------


@case(
    "msg-to-all-others",
    "3.1.7",
    MUST,
    RELAY_TO_ALL,
    title="a msg reaches every other client, never its sender",
    also=("3.1.6", "3.1.7.2", "5.3"),
)
def msg_to_all_others(ctx: CaseContext) -> None:
    ana, *others = ctx.crowd(4)
    assert ana.nick
    ana.send(cw.Message(text="to everyone"))
    _all_others_get(others, lambda p: p.expect_message(ana.nick or "", "to everyone"), ana)


@case(
    "no-echo",
    "3.1.7",
    MUST,
    "It MUST NOT echo a frame to its sender",
    title="neither a msg nor a file comes back to its sender",
    also=("3.1.4", "3.1.6"),
)
def no_echo(ctx: CaseContext) -> None:
    ana, bob = ctx.login(), ctx.login()
    assert ana.nick
    ana.send(cw.Message(text="mine"))
    bob.expect_message(ana.nick, "mine")
    ana.quiet(what=f"no relay of {ana.label}'s own msg back to {ana.label}")
    ana.send_file("mine.txt", b"mine")
    bob.expect_file(ana.nick, "mine.txt", b"mine")
    ana.quiet(what=f"no relay of {ana.label}'s own file back to {ana.label}")


@case(
    "msg-text-exact",
    "3.1.7.2",
    MUST,
    "The server MUST relay `text` byte for byte as the sender sent it, line feeds and other "
    "control characters included",
    title="texts with control characters, header look-alikes and UTF-8 arrive unchanged",
    also=("2.8.6",),
)
def msg_text_exact(ctx: CaseContext) -> None:
    ana, bob = ctx.login(), ctx.login()
    assert ana.nick
    texts = [
        "plain",
        "line 1\nline 2\r\n",
        "\x1b[31mred\x1b[0m\x07",
        "\x00nul\x00",
        "msg 5     hello",
        "list      ",
        "  leading and trailing  ",
        "ção 李 😀 \u202e",
        "\ufeffbom",
    ]
    for text in texts:
        ana.send(cw.Message(text=text))
    for text in texts:
        bob.expect_message(ana.nick, text)


@case(
    "msg-too-long",
    "3.1.6",
    MUST,
    "A server that receives a `text_size` above `TEXT_MAX` MUST treat the frame as malformed "
    "(6.1).",
    title="a msg of 10000 bytes closes the sender's connection and is not relayed",
    also=("2.7", "6.1"),
)
def msg_too_long(ctx: CaseContext) -> None:
    ana, bob, carol = ctx.login(), ctx.login(), ctx.login()
    assert carol.nick
    ana.send_raw(b"msg 10000 " + b"y" * 10000, note="msg 10000 and 10000 bytes")
    ana.expect_close("the server to close the connection after a text_size of 10000")
    carol.send(cw.Message(text="after"))
    bob.expect_message(carol.nick, "after", f"{carol.label}'s message, nothing of the long text")


# --- 6. Malformed input (spec/vectors/malformed.json) ----------------------------------------


def _run_vector(ctx: CaseContext, vector: dict[str, Any]) -> None:
    data = bytes.fromhex(vector["hex"])
    label = vector["id"]
    if vector["state"] == "LOGIN":
        probe = ctx.connect(label)
    else:
        probe = ctx.login(label=None)
        probe.label = f"{probe.nick} ({label})"
    probe.send_raw(data, note=f"vector {label}: {render(data, 48)}")
    if vector.get("eof"):
        probe.shutdown_write()
    if vector.get("reply") == "NE":
        probe.expect_refused_and_closed(f"NE, then the end of the stream, for vector {label}")
    else:
        probe.expect_close(f"the server to close the connection for vector {label}")
    probe.close()


def _vector_case(ctx: CaseContext, select: Callable[[dict[str, Any]], bool]) -> str:
    vectors = [v for v in ctx.vectors("malformed") if v["direction"] == "C→S" and select(v)]
    failures: list[tuple[str, Failed]] = []
    not_run: list[str] = []  # vectors left when the case's time ran out
    for vector in vectors:
        if ctx.remaining() < 1.0:
            not_run.append(vector["id"])
            continue
        try:
            _run_vector(ctx, vector)
        except Failed as exc:
            failures.append((vector["id"], exc))
    if not failures and not not_run:
        return f"{len(vectors)} vectors"
    ran = len(vectors) - len(not_run)
    counts = f"{len(failures)} of the {ran} vectors run failed"
    if not_run:
        counts += (
            f"; {len(not_run)} of {len(vectors)} not run: the case's "
            f"{ctx.deadline - ctx.started:g} s ran out (first not run: {not_run[0]})"
        )
    if not failures:
        raise Failed(f"all {len(vectors)} vectors checked", counts, timed_out=True)
    first_id, first = failures[0]
    others = ", ".join(vector_id for vector_id, _ in failures[1:6])
    more = f"; also {others}" + ("..." if len(failures) > 6 else "") if others else ""
    raise Failed(
        f"for each of the {len(vectors)} vectors: {first.expected}",
        f"{counts}; {first_id}: {first.actual}{more}",
        requirement=first.requirement,
        timed_out=all(exc.timed_out for _, exc in failures),
    )


_GROUPS: list[tuple[str, str, str, str, tuple[str, ...], Callable[[dict[str, Any]], bool]]] = [
    (
        "login-malformed",
        "6.3",
        "In state `LOGIN` it MUST answer the malformed frame with `NE` and close the connection "
        "(3.1.1).",
        "every malformed first frame of the vectors is answered NE, then closed",
        ("3.1.1", "6.1"),
        lambda v: v["state"] == "LOGIN",
    ),
    (
        "malformed-header",
        "2.3",
        "A receiver MUST check every header against the grammar, the table and its state, and "
        "MUST treat any other header as malformed (section 6).",
        "headers breaking the grammar (NUL padding, leading zero, case...) close the connection",
        ("6.1", "6.2"),
        lambda v: v["state"] == "ACTIVE" and v["error"]["section"] == "2.3",
    ),
    (
        "malformed-table",
        "6.1",
        "A receiver MUST treat as malformed: ... a header that the table (2.6) does not allow in "
        "that direction, or that has the wrong number of size fields for its code;",
        "headers the table does not allow from a client close the connection",
        ("2.6", "6.2"),
        lambda v: v["state"] == "ACTIVE" and v["error"]["section"] == "2.6",
    ),
    (
        "malformed-state",
        "6.1",
        "A receiver MUST treat as malformed: ... a frame that the state machine (4.3) does not "
        "allow in the current state (for example `NC` with no `nick` pending, a second `ACC`, or "
        "any frame but `login` first);",
        "a second login closes the connection",
        ("4.3", "6.2"),
        lambda v: v["state"] == "ACTIVE" and v["error"]["section"] == "4.3",
    ),
    (
        "malformed-range",
        "2.7",
        "A receiver MUST treat a size outside its range as malformed and MUST NOT read the "
        "payload it announces.",
        "sizes out of range close the connection without waiting for the payload",
        ("6.1", "6.2"),
        lambda v: v["state"] == "ACTIVE" and v["error"]["section"] == "2.7",
    ),
    (
        "malformed-utf8",
        "2.8.2",
        "A receiver MUST treat a payload that is not valid UTF-8 as malformed.",
        "nicks, texts and names that are not UTF-8 close the connection",
        ("6.1", "6.2"),
        lambda v: v["state"] == "ACTIVE" and v["error"]["section"] == "2.8.2",
    ),
    (
        "malformed-file-name",
        "2.8.5",
        "A receiver MUST treat a frame with any other name as malformed.",
        "file names with separators, control or bidi characters close the connection",
        ("3.1.4", "6.1", "6.2"),
        lambda v: v["state"] == "ACTIVE" and v["error"]["section"] == "2.8.5",
    ),
    (
        "malformed-truncated",
        "6.1",
        "A receiver MUST treat as malformed: ... a stream that ends inside a frame, except in "
        "state `QUIT` (6.5).",
        "a client ending its stream inside a frame is closed and logged out",
        ("6.2", "6.5"),
        lambda v: v["state"] == "ACTIVE" and v["error"]["section"] == "6.5",
    ),
]


def _make_vector_case(select: Callable[[dict[str, Any]], bool]) -> Callable[[CaseContext], str]:
    def run(ctx: CaseContext) -> str:
        return _vector_case(ctx, select)

    return run


for _id, _section, _requirement, _title, _also, _select in _GROUPS:
    case(_id, _section, MUST, _requirement, title=_title, timeout=60.0, also=_also)(
        _make_vector_case(_select)
    )


@case(
    "malformed-stops",
    "6.2",
    MUST,
    STOP,
    title="bytes after a malformed header are not read",
    also=("2.3",),
)
def malformed_stops(ctx: CaseContext) -> None:
    ana, bob = ctx.login(), ctx.login()
    ana.send_raw(b"msg 05    hello" + b"list      ", note="msg 05 (leading zero), then list")
    frames = ana.expect_close("the server to close without answering the list after it")
    replies = [f for f in frames if isinstance(f.event, cw.ListReply)]
    if replies:
        raise Failed("no answer to frames after a malformed one", f"received {replies[0]}")
    bob.quiet(what="no relay of the malformed msg")


@case(
    "malformed-isolated",
    "6.3",
    MUST,
    "A malformed frame on one connection MUST NOT affect any other connection.",
    title="other clients chat on while one sends garbage",
)
def malformed_isolated(ctx: CaseContext) -> None:
    bob, carol = ctx.login(), ctx.login()
    assert bob.nick and carol.nick
    for garbage in (b"msg 5\x00\x00\x00\x00\x00hello", b"\xff" * 10, b"NC        "):
        bad = ctx.login()
        bad.send_raw(garbage)
        bad.expect_close()
    bob.send(cw.Message(text="still here"))
    carol.expect_message(bob.nick, "still here")
    carol.send_file("ok.txt", b"ok")
    bob.expect_file(carol.nick, "ok.txt", b"ok")
    _list_holds(bob, [bob.nick, carol.nick], [], "both bystanders still listed")


@case(
    "malformed-logs-out",
    "7.1",
    MUST,
    LOGOUT,
    title="a client closed for a malformed frame leaves the list, its nick is free",
    also=("6.3",),
)
def malformed_logs_out(ctx: CaseContext) -> None:
    ana, bob = ctx.login(), ctx.login()
    assert ana.nick and bob.nick
    ana.send_raw(b"LIST      ", note="LIST (upper case)")
    ana.expect_close()
    _eventually_listed(ctx, bob, [bob.nick], [ana.nick], f"{ana.nick!r} logged out")
    _login_eventually(ctx, ana.nick, f"ACC to a login as {ana.nick!r}")


# --- 5. Ordering ----------------------------------------------------------------------------


@case(
    "replies-in-order",
    "5.2",
    MUST,
    REPLY_ORDER,
    title="pipelined list and nick requests are answered in order",
    also=("3.1.2", "3.1.3"),
)
def replies_in_order(ctx: CaseContext) -> None:
    ana, bob = ctx.login(), ctx.login()
    assert ana.nick and bob.nick
    old, new = ana.nick, ctx.nick()
    requests: list[tuple[cw.Event, type[cw.Event], str]] = [
        (cw.ListRequest(), cw.ListReply, "list-reply with the old nick"),
        (cw.NickRequest(nick=bob.nick), cw.Refused, f"NE to the taken {bob.nick!r}"),
        (cw.NickRequest(nick=new), cw.NickChanged, f"NC to the free {new!r}"),
        (cw.ListRequest(), cw.ListReply, "list-reply with the new nick"),
        (cw.NickRequest(nick="a b"), cw.Refused, "NE to the invalid 'a b'"),
        (cw.ListRequest(), cw.ListReply, "list-reply with the new nick"),
    ]
    ana.send_raw(
        b"".join(cw.encode(request) for request, _, _ in requests),
        note="list, nick (taken), nick (free), list, nick (invalid), list in one write",
    )
    for index, (_, kind, what) in enumerate(requests):
        frame = ana.reply(f"reply {index + 1}: {what}")
        if not isinstance(frame.event, kind):
            raise Failed(f"reply {index + 1}: {what}", str(frame))
        if isinstance(frame.event, cw.ListReply):
            present, absent = ([old], [new]) if index == 0 else ([new], [old])
            problem = _check_list(frame.event.nicks, present, absent, ana.label)
            if problem:
                raise Failed(f"reply {index + 1}: {what}", problem)


@case(
    "relays-one-order",
    "5.3",
    MUST,
    RELAY_ORDER,
    title="two senders' messages reach three clients in one order",
    timeout=20.0,
    also=("3.1.7",),
)
def relays_one_order(ctx: CaseContext) -> None:
    ana, bob, *readers = ctx.crowd(5)
    count = 30
    for index in range(count):
        ana.send(cw.Message(text=f"a{index}"))
        bob.send(cw.Message(text=f"b{index}"))
    sequences = []
    for reader in readers:
        seen = [_text_of(reader.relay(f"relay {i + 1} of {2 * count}")) for i in range(2 * count)]
        sequences.append((reader.label, seen))
    for label, seen in sequences:
        for prefix in "ab":
            own = [t for t in seen if t.startswith(prefix)]
            if own != [f"{prefix}{i}" for i in range(count)]:
                raise Failed(f"each sender's messages in the order sent, at {label}", str(own))
    first_label, first = sequences[0]
    for label, seen in sequences[1:]:
        if seen != first:
            index = next(i for i, (x, y) in enumerate(zip(seen, first, strict=True)) if x != y)
            raise Failed(
                "the same order of relays at every client",
                f"{first_label} saw {first[index]!r} where {label} saw {seen[index]!r} "
                f"(relay {index + 1})",
            )
    for sender, other in ((ana, "b"), (bob, "a")):
        seen = [_text_of(sender.relay(f"relay {i + 1}")) for i in range(count)]
        if seen != [t for t in first if t.startswith(other)]:
            raise Failed(f"{sender.label} sees the others' relays in the common order", str(seen))


@case(
    "all-exchanges-at-once",
    "5.2",
    MUST,
    REPLY_ORDER,
    title="8 clients at once: login, list, nick, msg, file, quit, each answered right",
    timeout=30.0,
    also=("3.1.1", "3.1.2", "3.1.3", "3.1.4", "3.1.5", "3.1.6", "3.1.7"),
)
def all_exchanges_at_once(ctx: CaseContext) -> str:
    count = 8
    barrier = threading.Barrier(count, timeout=ctx.timeout() * 2)
    olds = [ctx.nick() for _ in range(count)]
    news = [ctx.nick() for _ in range(count)]
    errors: list[Failed] = []

    def client(index: int) -> None:
        probe: Probe | None = None
        try:
            probe = ctx.connect(olds[index])
            if not isinstance(probe.login(olds[index]).event, cw.Accepted):
                raise Failed(f"ACC to {olds[index]!r}", "NE")
            barrier.wait()  # everyone is in
            probe.send(cw.ListRequest())
            probe.send(cw.NickRequest(nick=news[index]))
            probe.send(cw.Message(text=f"from {news[index]}"))
            probe.send_file(f"{news[index]}.txt", news[index].encode())
            nicks = probe.expect_reply(cw.ListReply, "the list-reply, first reply").nicks
            problem = _check_list(nicks, [olds[index]], [news[index]], probe.label)
            if problem:
                raise Failed("a list with the requester's old nick", problem)
            probe.expect_reply(cw.NickChanged, f"NC to the free {news[index]!r}, second reply")
            got = set()
            for _ in range(2 * (count - 1)):
                event = probe.relay("a msg and a file from each of the others").event
                if isinstance(event, cw.MessageRelay | cw.FileRelay):
                    got.add((type(event).__name__, event.sender))
            wanted = {
                (k, n) for n in news if n != news[index] for k in ("MessageRelay", "FileRelay")
            }
            if got != wanted:
                raise Failed(
                    "a msg and a file from each other client, with its new nick",
                    f"{probe.label} got {sorted(got)}",
                )
            barrier.wait()  # everyone has everything
            probe.send(cw.Quit())
            probe.expect_close()
        except Failed as exc:
            errors.append(exc)
            barrier.abort()
        except threading.BrokenBarrierError:
            pass
        except OSError as exc:
            errors.append(Failed("the connection to work", repr(exc)))
            barrier.abort()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(ctx.remaining())
    if errors:
        raise errors[0]
    if any(thread.is_alive() for thread in threads):
        raise Failed("every client's exchanges to complete", "some were still waiting")
    observer = ctx.login()
    _eventually_listed(ctx, observer, [], olds + news, "no one left after every quit")
    return f"{count} clients"


def _text_of(frame: Frame) -> str:
    if not isinstance(frame.event, cw.MessageRelay):
        raise Failed("a msg-relay", str(frame))
    return frame.event.text


@case(
    "frames-not-interleaved",
    "5.1",
    MUST,
    "A peer MUST finish sending a frame, file data included, before it starts the next one.",
    title="messages sent during a 4 MiB file relay never cut into it",
    timeout=30.0,
    also=("3.1.4", "3.1.7.1"),
)
def frames_not_interleaved(ctx: CaseContext) -> None:
    ana, bob, carol, dave = ctx.crowd(4)
    assert ana.nick and bob.nick
    data = _file_data(4 << 20, seed=5)
    ana.send(cw.File(name="big.bin", size=len(data)))
    step = len(data) // 8
    for index in range(8):
        ana.send(cw.FileData(data=data[index * step : (index + 1) * step]))
        bob.send(cw.Message(text=f"during {index}"))
    ana.send(cw.FileData(data=data[8 * step :]))
    bob.send(cw.Message(text="after"))
    orders = []
    for reader in (carol, dave):
        order = []
        for _ in range(10):
            frame = reader.relay(f"the file and {bob.label}'s 9 messages")
            if isinstance(frame.event, cw.FileRelay):
                if frame.sha256 != _sha(data):
                    raise Failed("the file byte-identical", "its data differs")
                order.append("file")
            else:
                order.append(_text_of(frame))
        orders.append(order)
    if orders[0] != orders[1]:
        raise Failed("one order of relays for every client", f"{orders[0]} vs {orders[1]}")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- Robustness -----------------------------------------------------------------------------

STREAM = (
    "A receiver MUST decode the same frames however the stream is divided into reads: one byte at "
    "a time, several frames in one read, or a read that ends inside a frame."
)


@case(
    "byte-by-byte",
    "2.1",
    MUST,
    STREAM,
    title="every frame sent one byte per write works",
    also=("3.1.1", "3.1.2", "3.1.3", "3.1.4", "3.1.6"),
)
def byte_by_byte(ctx: CaseContext) -> None:
    bob = ctx.login()
    ana = ctx.connect()
    nick = ctx.nick()
    ana.send_raw(cw.encode(cw.Login(nick=nick)), piece=1, pause=0.001, note=f"login {nick!r}")
    if not isinstance(ana.reply("ACC to a login sent byte by byte").event, cw.Accepted):
        raise Failed("ACC to a login sent byte by byte", "NE")
    ana.nick = ana.label = nick
    ana.send_raw(cw.encode(cw.Message(text="slow")), piece=1, pause=0.001, note="msg 'slow'")
    bob.expect_message(nick, "slow")
    ana.send_raw(cw.encode(cw.ListRequest()), piece=1, pause=0.001, note="list")
    ana.expect_reply(cw.ListReply, "a list-reply to a list sent byte by byte")
    new = ctx.nick()
    ana.send_raw(cw.encode(cw.NickRequest(nick=new)), piece=1, pause=0.001, note=f"nick {new!r}")
    ana.expect_reply(cw.NickChanged, "NC to a nick request sent byte by byte")
    head = cw.encode(cw.File(name="b.txt", size=5))
    ana.send_raw(head + b"bytes", piece=1, pause=0.001, note="file 'b.txt' (5 bytes)")
    bob.expect_file(new, "b.txt", b"bytes")


@case(
    "many-frames-one-write",
    "5.2",
    MUST,
    REPLY_ORDER,
    title="many frames of every kind in one write are all handled, replies in order",
    also=("2.1", "3.1.4", "3.1.6"),
)
def many_frames_one_write(ctx: CaseContext) -> None:
    ana, bob = ctx.login(), ctx.login()
    new = ctx.nick()
    blob = b"".join(
        [
            cw.encode(cw.Message(text="one")),
            cw.encode(cw.ListRequest()),
            cw.encode(cw.Message(text="two")),
            cw.encode(cw.NickRequest(nick=new)),
            cw.encode(cw.File(name="c.txt", size=3)) + b"abc",
            cw.encode(cw.Message(text="")),
            cw.encode(cw.ListRequest()),
        ]
    )
    old = ana.nick or ""
    ana.send_raw(blob, note="msg, list, msg, nick, file, msg, list in one write")
    bob.expect_message(old, "one")
    bob.expect_message(old, "two")
    bob.expect_file(new, "c.txt", b"abc")
    bob.expect_message(new, "")
    ana.expect_reply(cw.ListReply, "the first list-reply")
    ana.expect_reply(cw.NickChanged, "NC")
    nicks = ana.expect_reply(cw.ListReply, "the second list-reply").nicks
    problem = _check_list(nicks, [new], [old], ana.label)
    if problem:
        raise Failed("the second list with the new nick", problem)


@case(
    "many-clients",
    "3.1.7",
    MUST,
    RELAY_TO_ALL,
    title="many clients (--clients, 50) log in at once and all get everyone's messages",
    timeout=60.0,
    also=("5.3",),
)
def many_clients(ctx: CaseContext) -> str:
    count = max(ctx.options.clients, 3)
    probes = [ctx.connect(f"m{i}") for i in range(count)]
    nicks = [ctx.nick() for _ in probes]
    for probe, nick in zip(probes, nicks, strict=True):
        probe.send(cw.Login(nick=nick))
    for probe, nick in zip(probes, nicks, strict=True):
        if not isinstance(probe.reply(f"ACC to {nick!r}").event, cw.Accepted):
            raise Failed(f"ACC to each of {count} simultaneous logins", f"NE to {nick!r}")
        probe.nick = probe.label = nick
    for probe in probes:
        probe.send(cw.Message(text=f"hello from {probe.nick}"))
    seen: dict[str, list[str]] = {}
    for probe in probes:
        assert probe.nick
        senders = []
        for _ in range(count - 1):
            frame = probe.relay(f"{count - 1} relays, one from each other client")
            if not isinstance(frame.event, cw.MessageRelay):
                raise Failed("msg-relays only", str(frame))
            senders.append(frame.event.sender)
        if sorted(senders) != sorted(n for n in nicks if n != probe.nick):
            raise Failed(
                f"one relay from each of the {count - 1} others at {probe.nick}",
                f"relays from {sorted(senders)}",
            )
        seen[probe.nick] = senders
    names = list(seen)
    for a, b in itertools.pairwise(names):
        if [s for s in seen[a] if s != b] != [s for s in seen[b] if s != a]:
            raise Failed("one order of relays for everyone (5.3)", f"{a} and {b} differ")
    _list_holds(probes[0], nicks, [], f"all {count} clients listed")
    return f"{count} clients"


FLOOD_FILE = 128 * 1024  # bytes of each file of the flood
FLOOD_PER_SENDER = 32  # messages each sender of the flood sends: a short burst, spec 7.3


class _Window:
    """A fair sender's view of one reader: at most ``size`` relays sent ahead of what the
    reader has received, so only a client that does not read at all can fall behind."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.sent = 0
        self.received = 0
        self.errors: list[Failed] = []
        self.changed = threading.Condition()

    def got_one(self) -> None:
        with self.changed:
            self.received += 1
            self.changed.notify_all()

    def fail(self, exc: Failed) -> None:
        with self.changed:
            self.errors.append(exc)
            self.changed.notify_all()

    def wait_for_room(self, timeout: float) -> bool:
        with self.changed:
            return self.changed.wait_for(
                lambda: bool(self.errors) or self.sent - self.received < self.size, timeout
            )


def _reading(window: _Window, read_one: Callable[[int], None], count: int) -> threading.Thread:
    def run() -> None:
        try:
            for index in range(count):
                read_one(index)
                window.got_one()
        except Failed as exc:
            window.fail(exc)
        except OSError as exc:
            window.fail(Failed("the connection to work", repr(exc)))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _flood_phase(
    ctx: CaseContext,
    silent: Probe,
    reader: Probe,
    *,
    what: str,
    sends: Sequence[Callable[[], None]],
    read_one: Callable[[int], None],
    window: int,
) -> None:
    """Send ``sends`` one after the other, each once the reader is less than ``window`` relays
    behind; raise `Failed` (spec 7.3) when the reader stops receiving."""
    state = _Window(window)
    thread = _reading(state, read_one, len(sends))
    stalled = f"relays to {reader.label} to go on while {silent.label} does not read ({what})"
    stall = (
        f"{reader.label} received {{}} of the {{}} {what} sent, then nothing for "
        f"{ctx.options.wait:g} s: the server stalls on the silent client"
    )
    for send in sends:
        ok = state.wait_for_room(ctx.timeout())
        if state.errors:
            break
        if not ok:
            actual = stall.format(state.received, state.sent)
            raise Failed(stalled, actual, requirement=SLOW_READER, timed_out=True)
        send()
        state.sent += 1
    thread.join(ctx.timeout())
    if state.errors:
        error = state.errors[0]
        if error.timed_out and error.requirement is None:  # the reader waited in vain
            actual = f"{stall.format(state.received, state.sent)} ({error.actual})"
            raise Failed(stalled, actual, requirement=SLOW_READER, timed_out=True)
        raise Failed(
            f"all {len(sends)} {what} at {reader.label} while {silent.label} does not read",
            f"after {state.received}: {error.actual}",
            requirement=error.requirement or SLOW_READER,
            timed_out=error.timed_out,
        )
    if thread.is_alive():
        raise Failed(stalled, f"{reader.label} received {state.received} of {len(sends)}")


def _flood_text(sender: int, index: int) -> str:
    # A full 9999-byte text that says who sent it and which one it is.
    head = f"flood {sender}.{index} "
    return head + "m" * (cw.TEXT_MAX - len(head))


def _flood_messages(ctx: CaseContext, silent: Probe, reader: Probe, volume: int) -> int:
    """About ``volume`` bytes of 9999-byte messages relayed past ``silent``, from senders of a
    short burst each (round robin); returns the bytes the server had to relay to ``silent``."""
    count = max(volume // cw.TEXT_MAX, 2 * FLOOD_PER_SENDER)
    senders = ctx.crowd(-(-count // FLOOD_PER_SENDER))
    plan = [(s, i) for i in range(FLOOD_PER_SENDER) for s in range(len(senders))][:count]
    nicks = [p.nick or "" for p in senders]
    expected = dict.fromkeys(range(len(senders)), 0)

    def read_one(index: int) -> None:
        frame = reader.relay(f"message relay {index + 1} of {count} of the flood")
        event = frame.event
        if not isinstance(event, cw.MessageRelay) or event.sender not in nicks:
            raise Failed("a message of the flood", str(frame))
        sender = nicks.index(event.sender)
        if event.text != _flood_text(sender, expected[sender]):
            raise Failed(f"message {expected[sender]} of {event.sender} next", str(frame))
        expected[sender] += 1

    def sending(sender: int, index: int) -> Callable[[], None]:
        return lambda: senders[sender].send(cw.Message(text=_flood_text(sender, index)))

    sends = [sending(sender, index) for sender, index in plan]
    _flood_phase(
        ctx,
        silent,
        reader,
        what="messages",
        sends=sends,
        read_one=read_one,
        window=4 * FLOOD_PER_SENDER,
    )
    return sum(cw.HEADER_SIZE + len(nicks[s].encode()) + cw.TEXT_MAX for s, _ in plan)


def _flood_files(ctx: CaseContext, silent: Probe, reader: Probe, volume: int) -> int:
    """``volume`` bytes of files relayed past ``silent``; returns the bytes relayed to it."""
    sender = ctx.login()
    nick = sender.nick or ""
    data = _file_data(FLOOD_FILE, seed=3)
    count = max(volume // FLOOD_FILE, 4)

    def read_one(index: int) -> None:
        reader.expect_file(nick, f"flood{index}.bin", data)

    def sending(index: int) -> Callable[[], None]:
        return lambda: sender.send_file(f"flood{index}.bin", data)

    sends = [sending(i) for i in range(count)]
    _flood_phase(ctx, silent, reader, what="files", sends=sends, read_one=read_one, window=8)
    head = len(cw.encode(cw.FileRelay(sender=nick, name="flood0.bin", size=FLOOD_FILE)))
    return count * (head + FLOOD_FILE)


def _flood(ctx: CaseContext) -> tuple[Probe, int]:
    """A client that never reads, and a flood relayed past it to a client that does: first
    ``--flood`` / 2 bytes of messages from several senders, then ``--flood`` bytes of files (a
    server may queue the two kinds apart, or block on one kind only). Returns the silent client
    and the bytes the server had to relay to it. Raises `Failed` when relays to the reader stop
    (spec 7.3)."""
    silent = ctx.login(label=None)
    reader = ctx.login()
    total = _flood_messages(ctx, silent, reader, ctx.options.flood // 2)
    total += _flood_files(ctx, silent, reader, ctx.options.flood)
    return silent, total


SLOW_READER = Requirement(
    "7.3",
    "A server MUST NOT let a client that reads slowly, or not at all, delay relays to other "
    "clients.",
)


@case(
    "slow-reader",
    "7.3",
    MUST,
    SLOW_READER.text,
    title="a client that stops reading does not stall relays to the others (--flood)",
    timeout=60.0,
    also=("3.1.7",),
)
def slow_reader(ctx: CaseContext) -> str:
    _, total = _flood(ctx)
    return f"{total} bytes relayed past a silent client"


@case(
    "slow-reader-bounded",
    "7.3",
    SHOULD,
    "It SHOULD bound what it holds for each client and close the connection of a client whose "
    "unsent frames exceed the bound",
    title="the server closes a client that does not read once too much is queued for it",
    timeout=60.0,
)
def slow_reader_bounded(ctx: CaseContext) -> str:
    silent, total = _flood(ctx)
    got, ended = _read_raw_until_end(silent, ctx.timeout() * 2)
    if not ended or got >= total:
        raise Failed(
            f"the connection of the silent client closed before {total} bytes were queued",
            f"it received {got} bytes and is still open",
        )
    return f"closed after {got} of {total} bytes"


def _read_raw_until_end(probe: Probe, seconds: float) -> tuple[int, bool]:
    # Raw reading: the server may cut a frame short when it drops a slow client.
    deadline = time.monotonic() + seconds
    got = 0
    while (left := deadline - time.monotonic()) > 0:
        try:
            probe.sock.settimeout(left)
            data = probe.sock.recv(1 << 20)
        except TimeoutError:
            return got, False
        except OSError:
            return got, True
        if not data:
            return got, True
        got += len(data)
    return got, False


@case(
    "stall-timeout",
    "7.2",
    SHOULD,
    "A server SHOULD close a connection that has not completed login within a bounded time "
    "... and one that stops for too long in the middle of a frame",
    title="a client stopping inside a frame is closed (give --stall-timeout)",
    timeout=600.0,
)
def stall_timeout(ctx: CaseContext) -> None:
    limit = ctx.options.stall_timeout
    skip_unless(limit is not None, "give --stall-timeout SECONDS to check it")
    assert limit is not None
    probe = ctx.login()
    probe.send_raw(b"msg 5     he", note="msg 5 and 2 of its 5 bytes, then silence")
    probe.expect_close(
        f"the server to close the stalled connection within {limit:g} s", timeout=limit + 3
    )


@case(
    "tls-alpn",
    "A",
    SHOULD,
    "A server using TLS SHOULD offer the ALPN identifier `chatwire/1` and MUST NOT require the "
    "client to offer it.",
    title="a TLS server selects the ALPN protocol chatwire/1",
    also=("9",),
)
def tls_alpn(ctx: CaseContext) -> str:
    skip_unless(ctx.endpoint.scheme == "tls", "the server is not reached over tls://")
    probe = ctx.connect()
    sock = probe.sock
    chosen = sock.selected_alpn_protocol() if isinstance(sock, ssl.SSLSocket) else None
    if chosen != "chatwire/1":
        raise Failed("ALPN chatwire/1 selected", f"selected {chosen!r}")
    return "chatwire/1"


# --- Informational: what the spec leaves open -------------------------------------------------


@case(
    "notices",
    "3.1.8",
    MAY,
    "A server MAY send notices to logged-in clients",
    title="does the server send notices (join, leave, rename, welcome)?",
)
def notices(ctx: CaseContext) -> str:
    ana = ctx.login()
    ana.drain(ctx.options.quiet)
    bob = ctx.login()
    new = ctx.nick()
    bob.change_nick(new)
    _quit(bob)
    ana.list_nicks()
    ana.drain(ctx.options.quiet)
    texts = [f.event.text for f in ana.notices if isinstance(f.event, cw.Notice)]
    if not texts:
        return "no notices seen around a login, a rename and a quit"
    return f"{len(texts)} notices, e.g. {texts[0]!r}"


@case(
    "list-order",
    "3.1.2",
    MAY,
    "A server MAY list the nicks in any order, which need not be the same from one reply to the "
    "next.",
    title="in what order does the server list nicks?",
)
def list_order(ctx: CaseContext) -> str:
    # Joined as c..., a..., b...: join order, sorted order and their reverses all differ, so
    # the observation can tell them apart.
    probes = [ctx.login(ctx.nick(head=h)) for h in ("c", "a", "b")]
    ours = [p.nick or "" for p in probes]
    listed = [n for n in probes[0].list_nicks() if n in ours]
    orders = {
        "join order": ours,
        "sorted": sorted(ours),
        "reverse join order": ours[::-1],
        "reverse sorted": sorted(ours, reverse=True),
    }
    for name, order in orders.items():
        if listed == order:
            return f"{name} ({', '.join(listed)} for logins {', '.join(ours)})"
    return f"other: {listed} for logins {ours}"


@case(
    "malformed-notice",
    "6.3",
    MAY,
    "Later, it MAY send one notice saying why, then closes.",
    title="does the server explain a malformed frame in a notice before closing?",
    also=("3.1.8",),
)
def malformed_notice(ctx: CaseContext) -> str:
    ana = ctx.login()
    ana.drain(ctx.options.quiet)
    before = len(ana.notices)
    ana.send_raw(b"msg 05    hello", note="msg 05 (leading zero)")
    ana.expect_close()
    notices_seen = ana.notices[before:]
    if notices_seen and isinstance(notices_seen[-1].event, cw.Notice):
        return f"notice {notices_seen[-1].event.text!r}"
    return "closes without a notice"


del _id, _section, _requirement, _title, _also, _select  # loop names, not part of the module
