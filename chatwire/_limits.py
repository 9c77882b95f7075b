"""The numbers of spec 2.7: header size and the range of every size field.

`tests/test_spec_tables.py` checks these against the limits table of ``spec/protocol.md``.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "FILE_MAX",
    "HEADER_SIZE",
    "LIST_MAX",
    "NAME_MAX",
    "NICK_MAX",
    "SIZE_RANGES",
    "TEXT_MAX",
]

HEADER_SIZE: Final = 10  # spec 2.2: "a vector of exactly 10 positions"
NICK_MAX: Final = 9  # spec 2.7: one digit in the relay headers
TEXT_MAX: Final = 9999  # spec 2.7: "msg 9 9999" fills the header
NAME_MAX: Final = 255  # spec 2.7: "file 9 255" fills the header; POSIX NAME_MAX
FILE_MAX: Final = 9_999_999_999  # spec 2.7: ten digits in a bare size header
LIST_MAX: Final = 1_000_000  # spec 2.7: a protocol choice

# spec 2.7: (minimum, maximum) of every size field, by the field's name in spec 2.6.
SIZE_RANGES: Final[dict[str, tuple[int, int]]] = {
    "nick_size": (0, NICK_MAX),
    "text_size": (0, TEXT_MAX),
    "name_size": (1, NAME_MAX),
    "file_size": (0, FILE_MAX),
    "list_size": (0, LIST_MAX),
}
