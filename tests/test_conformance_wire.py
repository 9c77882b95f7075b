"""Byte renditions and header diagnoses (chatwire/conformance/wire.py)."""

from __future__ import annotations

import pytest

import chatwire as cw
from chatwire.conformance.wire import (
    broken_requirement,
    canonical_head,
    describe,
    explain_header,
    render,
)


def test_render_shows_every_non_printable_byte() -> None:
    assert render(b"ACC\x00\x00 \n\xff") == "ACC\\x00\\x00 \\x0a\\xff"
    assert render(b"x" * 100, 10) == "xxxxxxxxxx...(+90 bytes)"


@pytest.mark.parametrize(
    ("header", "words"),
    [
        (b"ACC\x00\x00\x00\x00\x00\x00\x00", "NUL"),
        (b"       ACC", "right-aligned"),
        (b"msg 05 5  ", "leading zero"),
        (b"msg  5    ", "two spaces"),
        (b"msg\t5     ", "tab"),
        (b"MSG 5     ", "case-sensitive"),
        (b"msg +5    ", "sign"),
        (b"join 3    ", "unknown code"),
        (b"          ", "all spaces"),
        (b"msg 5\xc2\xa0   ", "non-ASCII"),
        (b"AC", "only 2"),
    ],
)
def test_explain_header_names_the_problem(header: bytes, words: str) -> None:
    assert words in explain_header(header)


def test_a_correct_header_has_nothing_to_explain() -> None:
    assert explain_header(b"msg 3 5   ") == ""
    assert explain_header(b"ACC       ") == ""


def test_describe_and_canonical_head() -> None:
    assert describe(cw.MessageRelay(sender="ana", text="hi")) == "msg-relay from 'ana': 'hi'"
    assert describe(cw.Notice(text="x")) == "notice 'x'"
    assert describe(cw.ListReply(nicks=("a", "b"))) == "list-reply ['a', 'b']"
    assert "3 bytes" in describe(cw.FileRelay(sender="a", name="f", size=3))
    assert canonical_head(cw.Accepted()) == b"ACC       "
    assert canonical_head(cw.FileEnd()) is None


@pytest.mark.parametrize("section", ["2.6", "2.7", "2.8.2", "2.8.7", "4.3"])
def test_a_refused_frame_breaks_its_senders_rule(section: str) -> None:
    # The peer sent the frame: the failure is reported under the sender's MUST of that
    # section, not under the rule the kit applied as a receiver.
    requirement = broken_requirement(section)
    assert requirement.section == section
    assert requirement.text.startswith(("A sender MUST", "A peer MUST", "A server MUST"))


def test_an_unknown_section_falls_back_to_the_receivers_checks() -> None:
    assert broken_requirement(None).section == "2.3"
    assert broken_requirement("9.9").text.startswith("A receiver MUST check every header")
