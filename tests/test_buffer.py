"""Tests of chatwire._buffer.ReceiveBuffer."""

from __future__ import annotations

import gc
import tracemalloc

from hypothesis import given
from hypothesis import strategies as st

from chatwire._buffer import ReceiveBuffer


def test_peek_does_not_consume_and_commit_does() -> None:
    buf = ReceiveBuffer()
    assert buf.peek(1) is None
    buf.feed(b"hello")
    block, start = buf.peek(3)  # type: ignore[misc]
    assert block[start : start + 3] == b"hel"
    assert len(buf) == 5
    buf.commit(3)
    assert len(buf) == 2
    assert buf.peek(3) is None


def test_peek_inside_one_chunk_returns_the_chunk_itself() -> None:
    buf = ReceiveBuffer()
    chunk = b"abcdef"
    buf.feed(chunk)
    buf.commit(2)
    block, start = buf.peek(3)  # type: ignore[misc]
    assert block is chunk and start == 2


def test_take_gives_views_without_copying() -> None:
    buf = ReceiveBuffer()
    chunk = b"0123456789"
    buf.feed(chunk)
    view = buf.take(4)
    assert view.obj is chunk and bytes(view) == b"0123"
    assert bytes(buf.take(100)) == b"456789"  # at most the first chunk
    assert len(buf) == 0
    assert buf.take(5) == b""


def test_empty_feeds_are_ignored() -> None:
    buf = ReceiveBuffer()
    buf.feed(b"")
    assert len(buf) == 0
    assert buf.peek(1) is None


def test_a_run_straddling_chunks_copies_only_its_own_bytes() -> None:
    # A 10-byte header split 3 + 7 over a small chunk and a 64 MiB one: the join copies the 10
    # bytes, not the big chunk, and what follows is still read from the big chunk itself.
    big = b"HEADER1234"[3:] + bytes(64 << 20)
    buf = ReceiveBuffer()
    buf.feed(b"HEA")
    buf.feed(big)
    gc.collect()
    tracemalloc.start()
    try:
        block, start = buf.peek(10)  # type: ignore[misc]
        assert block[start : start + 10] == b"HEADER1234"
        buf.commit(10)
        view = buf.take(1 << 30)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024
    assert view.obj is big and view.nbytes == len(big) - 7
    assert len(buf) == 0


def test_a_run_over_three_chunks_leaves_the_rest_of_the_last() -> None:
    buf = ReceiveBuffer()
    for chunk in (b"ab", b"cd", b"efgh", b"ij"):
        buf.feed(chunk)
    block, start = buf.peek(5)  # type: ignore[misc]
    assert block[start : start + 5] == b"abcde"
    buf.commit(5)
    block, start = buf.peek(4)  # straddles again: from the offset into "efgh", then "ij"
    assert block[start : start + 4] == b"fghi"
    buf.commit(4)
    assert bytes(buf.take(9)) == b"j" and len(buf) == 0


def test_clear_drops_everything() -> None:
    buf = ReceiveBuffer()
    buf.feed(b"abc")
    buf.feed(b"defg")
    buf.peek(5)
    buf.clear()
    assert len(buf) == 0 and buf.peek(1) is None and buf.take(3) == b""
    buf.feed(b"xy")
    assert bytes(buf.take(5)) == b"xy"


ops = st.lists(st.tuples(st.sampled_from(["peek", "take"]), st.integers(1, 30), st.integers(0, 30)))


@given(chunks=st.lists(st.binary(max_size=20), max_size=20), ops=ops)
def test_peek_commit_and_take_see_the_stream_in_order(chunks, ops) -> None:
    buf = ReceiveBuffer()
    for chunk in chunks:
        buf.feed(chunk)
    stream = b"".join(chunks)
    seen = b""
    for op, n, keep in ops:
        if op == "take":
            seen += bytes(buf.take(n))
        else:
            peeked = buf.peek(n)
            if peeked is None:
                assert len(buf) < n
                continue
            block, start = peeked
            assert block[start : start + n] == stream[len(seen) : len(seen) + n]
            # Commit all of it or part of it (a header peeked before its frame is complete).
            k = min(n, keep) or n
            seen += block[start : start + k]
            buf.commit(k)
        assert len(buf) == len(stream) - len(seen)
    assert stream.startswith(seen)
    assert seen + b"".join(bytes(buf.take(1 << 20)) for _ in range(len(chunks) + 2)) == stream
