"""Tests of chatserver.files: anonymous, refcounted spool files within a space limit."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from chatserver import files
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


MOUNTINFO = "\n".join(
    [
        "22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw",
        "23 22 0:21 / /tmp rw,nosuid shared:2 - tmpfs tmpfs rw,size=100k",
        "24 22 0:22 / /mnt/with\\040space rw - xfs /dev/vdb rw",
        "25 23 0:23 / /tmp/deep rw - btrfs /dev/vdc rw",
        "26 23 0:24 / /tmp/deep rw - tmpfs tmpfs rw",
        "not a mountinfo line",
    ]
)


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/", "ext4"),
        ("/tmp", "tmpfs"),
        ("/tmp/spool", "tmpfs"),
        ("/tmpfoo", "ext4"),  # a prefix of the text is not a parent directory
        ("/mnt/with space/x", "xfs"),  # mountinfo escapes the space
        ("/tmp/deep/x", "tmpfs"),  # of two mounts on one point, the later covers the other
    ],
)
def test_the_file_system_of_a_path_is_read_from_mountinfo(path: str, kind: str) -> None:
    assert files.filesystem_type(path, MOUNTINFO) == kind


def test_the_file_system_of_a_real_directory_is_known(tmp_path: Path) -> None:
    # The spool directory's own type, from this process's /proc/self/mountinfo (Linux).
    assert files.filesystem_type(str(tmp_path)) != ""
    assert files.filesystem_type(str(tmp_path), "") == ""  # nothing known: nothing reserved


@pytest.mark.parametrize(("kind", "reserved"), [("ext4", True), ("tmpfs", False), ("", False)])
def test_disk_space_is_reserved_only_where_that_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str, reserved: bool
) -> None:
    # On tmpfs, fallocate would allocate and zero every page at once on the reactor.
    monkeypatch.setattr(files, "filesystem_type", lambda path: kind)
    manager = SpoolManager(str(tmp_path), limit=4 << 20)
    assert manager.reserves_space is reserved
    spool = manager.open(1 << 20)
    blocks = os.fstat(spool.fd).st_blocks * 512
    assert blocks >= 1 << 20 if reserved else blocks == 0
    spool.write(b"x" * 10)
    assert os.pread(spool.fd, 10, 0) == b"x" * 10  # written from the start all the same
    spool.release()
    assert manager.used == 0


def test_a_disk_that_cannot_hold_the_file_refuses_it_when_it_is_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(fd: int, offset: int, length: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files, "filesystem_type", lambda path: "ext4")
    monkeypatch.setattr(os, "posix_fallocate", full)
    manager = SpoolManager(str(tmp_path), limit=100)
    before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(SpoolError, match=r"no room for 50 bytes in .*: No space left on device"):
        manager.open(50)
    assert manager.used == 0 and manager.open_spools == 0
    assert len(os.listdir("/proc/self/fd")) == before  # the file was closed


def test_a_missing_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SpoolError, match="does not exist"):
        SpoolManager(str(tmp_path / "nope"), limit=1)


def test_one_owner_cannot_reserve_more_than_its_quota(tmp_path: Path) -> None:
    manager = SpoolManager(str(tmp_path), limit=1000, quota=300)
    first = manager.open(200, owner="10.0.0.1")
    with pytest.raises(SpoolError, match=r"spool quota of 10\.0\.0\.1 reached: 101 bytes asked"):
        manager.open(101, owner="10.0.0.1")
    other = manager.open(300, owner="10.0.0.2")  # another address has its own quota
    local = manager.open(400, owner="")  # local (Unix-socket) clients have none
    empty = [manager.open(0, owner="10.0.0.1") for _ in range(2)]
    assert manager.held_by("10.0.0.1") == 200
    first.release()
    for spool in (*empty, other, local):
        spool.release()
    assert manager.held_by("10.0.0.1") == 0 and manager.used == 0
    manager.open(300, owner="10.0.0.1").release()  # the whole quota again


def stepping_manager(tmp_path: Path, monkeypatch) -> tuple[SpoolManager, list]:
    """A manager whose steps of freeing are collected in a list instead of a reactor's."""
    monkeypatch.setattr(files, "FREE_STEP", 4096)
    scheduled: list = []
    return SpoolManager(str(tmp_path), limit=1 << 20, schedule=scheduled.append), scheduled


def released(manager: SpoolManager, size: int) -> files.Spool:
    spool = manager.open(size)
    spool.write(bytes(size))
    spool.release()
    return spool


def test_a_large_spool_is_freed_in_steps_one_per_pass(tmp_path: Path, monkeypatch) -> None:
    # Closing a 1 GiB spool at once stalls the reactor for ~100 ms; in steps, each pass does a
    # bounded share, and the space stays reserved until the file is really gone.
    manager, scheduled = stepping_manager(tmp_path, monkeypatch)
    released(manager, 4096)  # no larger than a step: freed at once, nothing scheduled
    assert manager.open_spools == 0 and scheduled == []
    spool = released(manager, 10_000)
    assert manager.open_spools == 1 and manager.used == 10_000 and len(scheduled) == 1
    sizes = []
    while scheduled:
        scheduled.pop()()
        if manager.open_spools:
            sizes.append(os.fstat(spool.fd).st_size)
    assert sizes == [10_000 - 4096, 10_000 - 2 * 4096]
    assert manager.open_spools == 0 and manager.used == 0
    with pytest.raises(OSError):
        os.fstat(spool.fd)


def test_stopping_frees_spools_still_being_freed(tmp_path: Path, monkeypatch) -> None:
    manager, _scheduled = stepping_manager(tmp_path, monkeypatch)
    released(manager, 10_000)
    manager.close()
    assert manager.open_spools == 0 and manager.used == 0
