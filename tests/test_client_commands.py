"""What a typed line means (chatclient.commands): the paper's commands, case-insensitive, and
text, with // for text that starts with /."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatclient.commands import (
    COMMAND_NAMES,
    HELP,
    ChangeNick,
    Clear,
    ExitCode,
    Help,
    ListUsers,
    Problem,
    Quit,
    Say,
    SendFile,
    parse,
)


@pytest.mark.parametrize(
    ("line", "command"),
    [
        ("hello", Say(text="hello")),
        ("  spaced  ", Say(text="  spaced  ")),
        ("", None),
        ("//shrug", Say(text="/shrug")),
        ("//", Say(text="/")),
        ("/list", ListUsers()),
        ("/LIST", ListUsers()),
        ("/List extra", ListUsers()),
        ("/help", Help()),
        ("/clear", Clear()),
        ("/clean", Clear()),  # the paper's spelling
        ("/CLEAN", Clear()),
        ("/quit", Quit()),
        ("/Quit", Quit()),
        ("/nick bob", ChangeNick(nick="bob")),
        ("/NICK  João ", ChangeNick(nick="João")),
        ("/sendFile a.txt", SendFile(path="a.txt")),
        ("/sendfile a.txt", SendFile(path="a.txt")),
        ("/SENDFILE ~/My Documents/a b.txt", SendFile(path="~/My Documents/a b.txt")),
        ('/sendFile "quoted name.txt"', SendFile(path="quoted name.txt")),
    ],
)
def test_parse(line: str, command: object) -> None:
    assert parse(line) == command


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("/nick", "usage: /nick"),
        ("/nick two words", "one word"),
        ("/sendFile", "usage: /sendFile"),
        ("/sendFile   ", "usage: /sendFile"),
        ("/frobnicate", "unknown command /frobnicate"),
        ("/ hello", "unknown command /"),
    ],
)
def test_problems_say_what_to_do(line: str, message: str) -> None:
    command = parse(line)
    assert isinstance(command, Problem)
    assert message in command.message


def test_help_lists_every_command() -> None:
    for name in COMMAND_NAMES:
        assert name in HELP
    assert "//" in HELP


def test_exit_codes_are_documented_numbers() -> None:
    assert [int(code) for code in ExitCode] == [0, 1, 2, 3, 4, 5, 130]
    from chatclient.__main__ import EPILOG  # noqa: PLC0415

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    codes = " ".join(readme.split("Exit codes:")[1].split("##")[0].split())
    for code in ExitCode:  # --help and the README list every code
        assert f"\n  {int(code):<3}  " in EPILOG, code
        assert f" {int(code)} " in f" {codes}", code


def test_help_says_what_ctrl_c_does() -> None:
    assert "Ctrl-C on an empty line" in HELP and "Ctrl-C clears the line" in HELP
