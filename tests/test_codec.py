"""Tests of chatwire._codec: the fast path equals the construct declarations.

The fast parser and encoder exist only for speed; these hypothesis differential tests show they
give the same results as the construct reference on arbitrary input: the same header parses,
the same events, the same bytes, and the same errors (section and offset).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import chatwire as cw
from chatwire import _codec
from chatwire._codec import ConstructParser, FastParser, encode, encode_reference, identify
from chatwire._wire import Code, Direction, FrameError
from tests.strategies import (
    chunk_sizes,
    chunked,
    client_streams,
    file_names,
    senders,
    server_streams,
    texts,
    user_lists,
    wire_nicks,
)
from tests.test_connection import in_state, run_to_end
from tests.test_connection import mutated as mutate

TOKENS = [
    b"ACC",
    b"NE",
    b"NC",
    b"list",
    b"nick",
    b"file",
    b"msg",
    b"quit",
    b"acc",
    b"Msg",
    b"0",
    b"00",
    b"05",
    b"7",
    b"12",
    b"9999",
    b"10000",
    b"9999999999",
    b"+1",
    b"-1",
    b" ",
    b"  ",
    b"\x00",
    b"\t",
    b"\r\n",
    b"\xc3\xa9",
    b"x",
]

headers = st.one_of(
    st.binary(min_size=10, max_size=10),
    st.lists(st.sampled_from(TOKENS), max_size=6).map(lambda t: b"".join(t).ljust(10)[:10]),
    st.lists(st.sampled_from(TOKENS), max_size=6).map(
        lambda t: b" ".join(t).ljust(10, b"\x00")[:10]
    ),
)


def outcome(parse, *args):
    try:
        return ("ok", parse(*args))
    except FrameError as exc:
        return ("error", exc.section, exc.offset)


@given(raw=headers, prefix=st.binary(max_size=3))
def test_fast_header_parse_equals_construct(raw, prefix) -> None:
    block = prefix + raw
    assert outcome(FastParser.header, block, len(prefix)) == outcome(
        ConstructParser.header, block, len(prefix)
    )


def test_the_header_cache_empties_when_full_and_keeps_caching() -> None:
    # Shared by every connection: one peer's thousands of distinct headers must not leave it
    # full for good (every later header would go through the regular expression).
    cache = _codec._HEADER_CACHE
    cache.clear()
    for size in range(_codec._HEADER_CACHE_MAX + 500):
        assert FastParser.header(b"%-10d" % size, 0) == (None, (size,))
        assert len(cache) <= _codec._HEADER_CACHE_MAX
    assert FastParser.header(b"msg 3 2   ", 0) == (Code.MSG, (3, 2))
    assert b"msg 3 2   " in cache
    assert FastParser.header(b"msg 3 2   ", 0) is cache[b"msg 3 2   "]


@given(raw=headers)
def test_fast_header_checks_equal_construct(raw) -> None:
    try:
        code, sizes = FastParser.header(raw, 0)
    except FrameError:
        return
    for direction in Direction:
        try:
            name = identify(direction, code, sizes)
        except FrameError:
            continue
        assert outcome(FastParser.check, name, raw, 0, sizes) == outcome(
            ConstructParser.check, name, raw, 0, sizes
        )


def run(parser: str, where, data: bytes, sizes, eof: bool):
    conn = in_state(*where) if parser == "fast" else _in_state_construct(*where)
    events, error = run_to_end(conn, chunked(data, sizes), eof)
    flat = [bytes(e.data) if isinstance(e, cw.FileData) else e for e in events]
    return flat, None if error is None else (error.section, error.offset, error.reply)


def _in_state_construct(role, state):
    # Same traffic as in_state, on a connection using the construct parser.
    conn = in_state(role, state)
    twin = cw.Connection(role, parser="construct")
    twin._state = conn._state
    twin._offset = conn._offset
    return twin


roles_and_states = st.sampled_from(
    [(cw.Role.SERVER, s) for s in ("LOGIN", "ACTIVE", "QUIT")]
    + [(cw.Role.CLIENT, s) for s in ("LOGIN", "AWAIT_ACC", "ACTIVE", "QUIT")]
)


@given(where=roles_and_states, data=st.binary(max_size=400), sizes=chunk_sizes, eof=st.booleans())
def test_fast_and_construct_connections_agree_on_arbitrary_bytes(where, data, sizes, eof) -> None:
    assert run("fast", where, data, sizes, eof) == run("construct", where, data, sizes, eof)


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(stream=client_streams(), data=st.data(), sizes=chunk_sizes, eof=st.booleans())
def test_fast_and_construct_agree_on_client_streams(stream, data, sizes, eof) -> None:
    bad = data.draw(st.just(bytes(stream.data[:4000])) | mutate(bytes(stream.data[:4000])))
    where = (cw.Role.SERVER, "LOGIN")
    assert run("fast", where, bad, sizes, eof) == run("construct", where, bad, sizes, eof)


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(pair=server_streams(), data=st.data(), sizes=chunk_sizes, eof=st.booleans())
def test_fast_and_construct_agree_on_server_streams(pair, data, sizes, eof) -> None:
    _requests, stream = pair
    bad = data.draw(st.just(bytes(stream.data[:4000])) | mutate(bytes(stream.data[:4000])))
    where = (cw.Role.CLIENT, "AWAIT_ACC")
    assert run("fast", where, bad, sizes, eof) == run("construct", where, bad, sizes, eof)


events = st.one_of(
    st.builds(cw.Login, nick=wire_nicks),
    st.builds(cw.NickRequest, nick=wire_nicks),
    st.builds(cw.Message, text=texts),
    st.builds(cw.MessageRelay, sender=senders, text=texts),
    st.builds(cw.Notice, text=texts),
    st.builds(cw.ListReply, nicks=user_lists),
    st.builds(cw.File, name=file_names, size=st.integers(0, cw.FILE_MAX)),
    st.builds(cw.FileRelay, sender=senders, name=file_names, size=st.integers(0, cw.FILE_MAX)),
    st.sampled_from([cw.Accepted(), cw.Refused(), cw.NickChanged(), cw.ListRequest(), cw.Quit()]),
)


@given(event=events)
def test_fast_encoding_equals_construct_build(event) -> None:
    assert encode(event) == encode_reference(event)


@pytest.mark.parametrize("event", [cw.FileData(data=b"x"), cw.FileEnd(), cw.ConnectionClosed()])
def test_non_frames_have_no_encoding(event) -> None:
    with pytest.raises(cw.LocalProtocolError):
        encode(event)
    with pytest.raises(cw.LocalProtocolError):
        encode_reference(event)


def test_identify_names_every_message_and_explains_the_rest() -> None:
    assert identify(Direction.C2S, None, (3,)) == "login"
    assert identify(Direction.S2C, None, (3,)) == "list-reply"
    with pytest.raises(FrameError, match="wrong number"):
        identify(Direction.S2C, Code.ACC, (1,))
    with pytest.raises(FrameError, match="never sends"):
        identify(Direction.S2C, Code.LIST, ())
