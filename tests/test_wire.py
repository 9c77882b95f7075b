"""Tests of chatwire._wire: the construct declarations and the header adapter."""

from __future__ import annotations

import construct
import pytest
from hypothesis import given
from hypothesis import strategies as st

import chatwire._wire as wire
from chatwire._wire import MESSAGES, Code, FrameError, GenericHeader, Header, format_header


@pytest.mark.parametrize(
    ("code", "sizes", "raw"),
    [
        (Code.ACC, (), b"ACC       "),
        (None, (0,), b"0         "),
        (Code.MSG, (9, 9999), b"msg 9 9999"),
        (Code.FILE, (9, 255), b"file 9 255"),
        (None, (9_999_999_999,), b"9999999999"),
    ],
)
def test_headers_are_left_aligned_and_space_padded(code, sizes, raw) -> None:
    assert format_header(code, sizes) == raw
    parsed = GenericHeader().parse(raw)
    assert (parsed.code, parsed.sizes) == (code, sizes)


@pytest.mark.parametrize(
    "raw",
    [
        b"ACC\x00\x00\x00\x00\x00\x00\x00",
        b" ACC      ",
        b"msg  5    ",
        b"msg\t5     ",
        b"msg 05    ",
        b"acc       ",
        b"MSG 5     ",
        b"msg +5    ",
        b"          ",
        b"msg 1 2 3 ",
        b"5 5       ",
        b"hello     ",
        b"msg 5\r\n   ",
    ],
)
def test_the_header_adapter_refuses_every_other_form(raw) -> None:
    with pytest.raises(FrameError) as info:
        GenericHeader().parse(raw)
    assert info.value.section == "2.3"


def test_message_headers_check_code_count_and_ranges() -> None:
    header = MESSAGES["msg-relay"].header
    assert header.parse(b"msg 9 9999") == {"nick_size": 9, "text_size": 9999}
    with pytest.raises(FrameError, match="expected a header 'msg <nick_size> <text_size>'"):
        header.parse(b"msg 5     ")
    with pytest.raises(FrameError) as info:
        header.parse(b"msg 10 1  ")
    assert info.value.section == "2.7"
    with pytest.raises(FrameError) as info:
        MESSAGES["file-relay"].header.parse(b"file 0 1  ")
    assert info.value.section == "3.1.7.1"
    with pytest.raises(FrameError):
        Header(Code.MSG, "text_size").build({"text_size": 10_000})


def test_structs_build_sizes_themselves() -> None:
    assert (
        MESSAGES["msg-relay"].struct.build({"nick": "zé", "text": "oi"}) == b"msg 3 2   z\xc3\xa9oi"
    )
    assert MESSAGES["list-reply"].struct.build({"user_list": ["a", "b"]}) == b"3         a\nb"
    assert MESSAGES["file"].struct.build({"name": "a", "data": b"xy"}) == b"file 1    a2         xy"
    assert MESSAGES["file"].head.build({"name": "a", "file_size": 2}) == b"file 1    a2         "
    assert MESSAGES["quit"].struct.build({}) == b"quit      "


@given(nick=st.text(max_size=9).filter(lambda t: len(t.encode()) <= 9), text=st.text(max_size=50))
def test_construct_round_trip(nick, text) -> None:
    struct = MESSAGES["msg-relay"].struct
    parsed = struct.parse(struct.build({"nick": nick, "text": text}))
    assert (parsed.nick, parsed.text) == (nick, text)


def test_frame_errors_are_construct_errors_with_offsets() -> None:
    with pytest.raises(construct.ConstructError) as info:
        MESSAGES["file"].head.parse(b"file 3    a/b3         ")
    assert isinstance(info.value, FrameError)
    assert (info.value.section, info.value.offset) == ("2.8.5", 10)


def test_padded_string_is_not_used() -> None:
    # spec 2.2 pads headers with spaces; construct's PaddedString pads with NUL.
    with open(wire.__file__, encoding="utf-8") as f:
        assert "PaddedString(" not in f.read()
