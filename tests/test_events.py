"""Tests of chatwire._events: events are frozen, slotted, keyword-only and validate themselves."""

from __future__ import annotations

import dataclasses

import pytest

import chatwire as cw

ALL = [
    cw.Login,
    cw.Accepted,
    cw.Refused,
    cw.ListRequest,
    cw.ListReply,
    cw.NickRequest,
    cw.NickChanged,
    cw.File,
    cw.Quit,
    cw.Message,
    cw.FileRelay,
    cw.MessageRelay,
    cw.Notice,
    cw.FileData,
    cw.FileEnd,
    cw.ConnectionClosed,
]


@pytest.mark.parametrize("cls", ALL)
def test_events_are_frozen_slotted_keyword_only(cls) -> None:
    params = cls.__dataclass_params__
    assert params.frozen
    assert hasattr(cls, "__slots__")
    assert all(f.kw_only for f in dataclasses.fields(cls))


def test_events_cannot_be_changed() -> None:
    event = cw.Message(text="hi")
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.text = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    "build",
    [
        lambda: cw.Login(nick="abcdefghij"),  # 10 bytes
        lambda: cw.Login(nick=b"ana"),  # type: ignore[arg-type]
        lambda: cw.NickRequest(nick="ééééé"),  # 10 bytes
        lambda: cw.Message(text="x" * 10_000),
        lambda: cw.Message(text="\ud800"),
        lambda: cw.MessageRelay(sender="", text="hi"),  # that is a Notice
        lambda: cw.MessageRelay(sender="a", text="x" * 10_000),
        lambda: cw.Notice(text="x" * 10_000),
        lambda: cw.ListReply(nicks="ana"),  # type: ignore[arg-type]
        lambda: cw.ListReply(nicks=["a\nb"]),
        lambda: cw.ListReply(nicks=[""]),
        lambda: cw.ListReply(nicks=["x"] * 500_001),  # over LIST_MAX
        lambda: cw.File(name="../x", size=1),
        lambda: cw.File(name="a", size=-1),
        lambda: cw.File(name="a", size=cw.FILE_MAX + 1),
        lambda: cw.File(name="a", size=True),
        lambda: cw.FileRelay(sender="", name="a", size=1),
        lambda: cw.FileData(data="text"),  # type: ignore[arg-type]
    ],
)
def test_invalid_events_are_local_errors(build) -> None:
    with pytest.raises(cw.LocalProtocolError):
        build()


# One valid value for every field of every event that has fields.
VALID = {
    cw.Login: {"nick": "ana"},
    cw.ListReply: {"nicks": ("ana",)},
    cw.NickRequest: {"nick": "ana"},
    cw.File: {"name": "a.txt", "size": 1},
    cw.Message: {"text": "hi"},
    cw.FileRelay: {"sender": "ana", "name": "a.txt", "size": 1},
    cw.MessageRelay: {"sender": "ana", "text": "hi"},
    cw.Notice: {"text": "hi"},
    cw.FileData: {"data": b"x"},
}
BAD_VALUES = [None, 5, 5.0, True, b"ana", object(), ["ana"]]
BAD_FIELDS = [
    pytest.param(cls, name, bad, id=f"{cls.__name__}.{name}={bad!r}")
    for cls, fields in VALID.items()
    for name in fields
    for bad in BAD_VALUES
    # values of the right type: a list of nicks, bytes as file data, an int as a size
    if not (name == "nicks" and isinstance(bad, list))
    and not (name == "data" and isinstance(bad, bytes))
    and not (name == "size" and type(bad) is int)
]


def test_every_event_with_fields_is_covered() -> None:
    assert set(VALID) == {cls for cls in ALL if dataclasses.fields(cls)}
    for cls, fields in VALID.items():
        assert cls(**fields)
        assert set(fields) == {f.name for f in dataclasses.fields(cls)}


@pytest.mark.parametrize(("cls", "name", "bad"), BAD_FIELDS)
def test_a_field_of_the_wrong_type_is_a_local_error(cls, name, bad) -> None:
    # Never TypeError or ValueError: an event that cannot be built is a LocalProtocolError.
    with pytest.raises(cw.LocalProtocolError):
        cls(**{**VALID[cls], name: bad})


def test_valid_edge_events_build() -> None:
    assert cw.Login(nick="").nick == ""  # well framed; the server answers NE (spec 2.7)
    assert cw.Login(nick="a b").nick == "a b"  # likewise, invalid but framable
    assert cw.Message(text="x" * cw.TEXT_MAX)
    assert cw.ListReply(nicks=iter(["ana", "bob"])).nicks == ("ana", "bob")
    assert cw.File(name="n" * 255, size=cw.FILE_MAX)
    assert "5 bytes" in repr(cw.FileData(data=memoryview(b"hello")))
