"""spec/protocol.md and chatwire must say the same thing.

Reads the tables of the spec (codes 2.4, messages 2.6, limits 2.7, transitions 4.3) and checks
them against the construct declarations and the state table, in both directions: everything the
spec lists is declared as the spec says, and chatwire declares nothing the spec does not list.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import construct
import pytest

import chatwire as cw
from chatwire._state import TRANSITIONS, State, Transition
from chatwire._wire import MESSAGES, Code, Direction, Header

SPEC = (Path(__file__).resolve().parent.parent / "spec" / "protocol.md").read_text(encoding="utf-8")


def table(header_start: str, columns: int) -> list[list[str]]:
    """Cells of the markdown table whose header row starts with ``header_start``."""
    lines = SPEC.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    header = [c.strip() for c in lines[start].strip().strip("|").split("|")]
    assert len(header) == columns, header
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    assert rows and all(len(r) == columns for r in rows)
    return rows


def names(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def section(number: str) -> str:
    """The text of section ``number`` (its heading line excluded), up to the next heading."""
    heading = rf"^#{{2,5}} {re.escape(number)}\.? .*?\n"
    match = re.search(heading + r"(.*?)(?=^#{2,5} )", SPEC, re.MULTILINE | re.DOTALL)
    assert match, number
    return match.group(1)


def flat(text: str) -> str:
    return " ".join(text.split())


def test_codes_table_lists_exactly_the_declared_codes() -> None:
    rows = table("| Code |", 3)
    assert {names(r[0])[0] for r in rows} == {code.value for code in Code}


def test_the_abnf_code_rule_lists_exactly_the_declared_codes() -> None:
    # spec 2.3: code = %s"ACC" / ... (case-sensitive strings, RFC 7405), over continuation lines.
    grammar = re.search(r"```\n(header .*?)```", section("2.3"), re.DOTALL)
    assert grammar, "the ABNF block of 2.3"
    rule = re.search(r"^code\s+=(.*?)^(?=\w)", grammar.group(1), re.MULTILINE | re.DOTALL)
    assert rule, "the code rule"
    alternatives = [a.split(";")[0].strip() for a in rule.group(1).split("/")]
    assert all(re.fullmatch(r'%s"[^"]+"', a) for a in alternatives), alternatives
    assert [a[3:-1] for a in alternatives] == [code.value for code in Code]
    assert f"exactly {cw.HEADER_SIZE} octets" in grammar.group(1)


def test_the_sent_by_column_matches_the_directions_of_each_code() -> None:
    # spec 2.4 "Sent by": server, client or both, against every message declared with that code.
    sent_by = {"server": {Direction.S2C}, "client": {Direction.C2S}, "both": set(Direction)}
    for row in table("| Code |", 3):
        code = Code(names(row[0])[0])
        declared = {spec.direction for spec in MESSAGES.values() if spec.header.code is code}
        assert sent_by[row[2]] == declared, (code, row[2])


MESSAGE_ROWS = table("| Message | Direction |", 5)


def test_message_table_lists_exactly_the_declared_messages() -> None:
    assert [names(r[0])[0] for r in MESSAGE_ROWS] == list(MESSAGES)


def declared_parts(name: str) -> list[str]:
    """The payload parts of a construct declaration, written as in the spec's table."""
    parts = []
    for sub in MESSAGES[name].struct.subcons[1:]:
        inner = sub.subcon.subcon if hasattr(sub.subcon, "subcon") else None
        if sub.name == "size_header":
            assert isinstance(inner, Header) and inner.code is None
            parts.append(f"<{inner.fields[0]}>")
        else:
            parts.append(sub.name)
    return parts


@pytest.mark.parametrize("row", MESSAGE_ROWS, ids=lambda r: names(r[0])[0])
def test_each_message_is_declared_as_the_spec_says(row) -> None:
    name, direction, header, parts, _seed = row
    spec = MESSAGES[names(name)[0]]
    assert spec.direction is Direction(direction)
    fields = names(header)[0].split(" ")
    code = None if fields[0].startswith("<") else fields.pop(0)
    assert spec.header.code == (None if code is None else Code(code))
    assert [f"<{f}>" for f in spec.header.fields] == fields
    assert declared_parts(spec.name) == ([] if parts == "—" else names(parts))
    assert spec.streamed == ("data" in names(parts))


def test_each_part_is_as_long_as_its_size_field() -> None:
    # spec 2.6: nick has nick_size bytes, text text_size, name name_size, user_list list_size,
    # data file_size. Each declaration reads the part's length from exactly that field.
    sizes = {
        "nick": "nick_size",
        "text": "text_size",
        "name": "name_size",
        "user_list": "list_size",
        "data": "file_size",
    }
    for spec in MESSAGES.values():
        for sub in spec.struct.subcons[1:]:
            if sub.name == "size_header":
                continue
            node = sub.subcon
            while not isinstance(node, construct.Bytes):
                node = node.subcon
            assert repr(node.length).endswith(f"[{sizes[sub.name]!r}]"), (spec.name, sub.name)


def test_the_non_empty_sender_rule_is_the_specs() -> None:
    # spec 2.7: "`file-relay` is the exception: its `nick_size` MUST NOT be 0 (3.1.7.1)", and
    # 3.1.7.1 says so itself. _wire declares it as Header(nonzero=(field, section)).
    rule = r"`([a-z-]+)` is the exception: its `(\w+)` MUST NOT be 0 \(([\d.]+)\)"
    stated = set(re.findall(rule, flat(SPEC)))
    declared = {
        (name, *spec.header.nonzero)
        for name, spec in MESSAGES.items()
        if spec.header.nonzero is not None
    }
    assert stated == declared == {("file-relay", "nick_size", "3.1.7.1")}
    for _name, field, number in declared:
        assert f"`{field}` MUST NOT be 0" in flat(section(number)), number
        low, _high = cw._limits.SIZE_RANGES[field]
        assert low == 0  # the rule narrows the range for this message only
    assert "a `file-relay` with an empty sender" in flat(section("6.1"))


def test_limits_table_matches_the_constants() -> None:
    rows = table("| Size field |", 4)
    ranges = {}
    for field, low, high, constant in rows:
        ranges[names(field)[0]] = (int(low), int(high))
        assert getattr(cw, names(constant)[0]) == int(high)
    assert ranges == cw._limits.SIZE_RANGES


# The seed paper (issue 2: ../shared/seed/seed-paper.txt from the checkout), if it is here.
PAPER = Path(
    os.environ.get(
        "CHATWIRE_SEED_PAPER",
        Path(__file__).resolve().parent.parent.parent / "shared" / "seed" / "seed-paper.txt",
    )
)


def sharpening_entries() -> list[str]:
    """The numbered entries of section 11, "Where this spec sharpens the paper"."""
    text = SPEC[SPEC.index("## 11. ") : SPEC.index("## Appendix A.")]
    entries = re.split(r"^\d+\. (?=\*\*)", text, flags=re.MULTILINE)[1:]
    assert len(entries) >= 20
    return entries


def test_every_sharpening_entry_quotes_the_paper_and_decides() -> None:
    for entry in sharpening_entries():
        assert "Decided (" in flat(entry), entry[:60]
        assert re.findall(r'"([^"]+)"', re.sub(r"`[^`]*`", "", entry)), entry[:60]


@pytest.mark.skipif(not PAPER.is_file(), reason=f"the seed paper is not at {PAPER}")
def test_every_quote_of_the_paper_is_exact() -> None:
    # Section 11 quotes the paper word for word, its markup (*italics*, \_) included; only line
    # breaks differ. Text in backquotes is the spec's own.
    paper = flat(PAPER.read_text(encoding="utf-8"))
    for entry in sharpening_entries():
        for quote in re.findall(r'"([^"]+)"', re.sub(r"`[^`]*`", "", entry)):
            assert flat(quote) in paper, f"not in the paper: {quote!r}"


def parse_transition(row: list[str]) -> tuple[tuple[State, str, Direction], Transition]:
    state, message, direction, condition, effect, nxt = row
    requires = None
    if condition != "—":
        match = re.fullmatch(r"pending starts with `(\w+)`", condition)
        assert match, condition
        requires = match.group(1)
    push, pop = None, False
    if effect.startswith("push"):
        push = names(effect)[0]
    elif effect == "pop":
        pop = True
    else:
        assert effect == "—", effect
    key = (State(names(state)[0]), names(message)[0], Direction(direction))
    return key, Transition(State(names(nxt)[0]), requires=requires, push=push, pop=pop)


def test_transition_table_is_the_specs_row_for_row() -> None:
    rows = table("| State | Message | Direction |", 6)
    assert list(TRANSITIONS.items()) == [parse_transition(row) for row in rows]
