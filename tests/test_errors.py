"""Tests of chatwire._errors."""

from __future__ import annotations

import chatwire as cw


def test_errors_carry_section_offset_and_reply() -> None:
    error = cw.RemoteProtocolError("bad header", section="2.3", offset=7, reply=cw.Refused())
    assert isinstance(error, cw.ProtocolError)
    assert str(error) == "bad header (spec 2.3) at byte 7"
    assert error.reply == cw.Refused()
    local = cw.LocalProtocolError("misuse")
    assert str(local) == "misuse" and local.section is None
    assert not isinstance(local, cw.RemoteProtocolError)
