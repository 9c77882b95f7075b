"""Tests of chatserver.files: anonymous, refcounted spool files within a space limit."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from chatserver.files import SpoolError, SpoolManager


def test_spools_are_anonymous_and_freed_by_the_last_reference(tmp_path: Path) -> None:
    manager = SpoolManager(str(tmp_path), limit=100)
    spool = manager.open(10)
    assert list(tmp_path.iterdir()) == []  # never visible, so never left behind
    spool.write(b"0123456789")
    assert spool.complete and os.pread(spool.fd, 10, 0) == b"0123456789"
    spool.acquire()
    spool.release()
    assert manager.used == 10 and manager.open_spools == 1
    spool.release()
    assert manager.used == 0 and manager.open_spools == 0
    with pytest.raises(OSError):
        os.fstat(spool.fd)


def test_the_space_limit_is_reserved_up_front(tmp_path: Path) -> None:
    manager = SpoolManager(str(tmp_path), limit=100)
    first = manager.open(60)
    with pytest.raises(SpoolError, match="spool full"):
        manager.open(41)
    second = manager.open(40)
    first.release()
    second.release()
    assert manager.used == 0


def test_a_missing_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SpoolError, match="does not exist"):
        SpoolManager(str(tmp_path / "nope"), limit=1)
