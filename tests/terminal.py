"""A program in a pseudo-terminal, and a tiny terminal emulator to read its screen (test helper).

prompt_toolkit draws with cursor movements (a space may be a "cursor forward"), so matching its
raw output with regular expressions is brittle. `Screen` interprets the subset of VT100/xterm
sequences such programs use (cursor moves, erase, scrolling, SGR ignored, OSC recorded) into a
grid of characters, with the lines scrolled off kept in ``history``. `Terminal` runs a command
under pexpect, feeds everything it prints to the screen, keeps the raw bytes too (to check that
nothing from the network reached the terminal raw), and waits for conditions with a timeout.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable

import pexpect

_CSI = re.compile(r"\x1b\[([0-9;?<=>]*)([ -/]*)([@-~])")
_OSC = re.compile(r"\x1b\]([^\x07\x1b]*)(\x07|\x1b\\)")


class Screen:
    """A grid of ``rows`` x ``cols`` characters with a cursor."""

    def __init__(self, rows: int, cols: int) -> None:
        self.rows = rows
        self.cols = cols
        self.grid = [[" "] * cols for _ in range(rows)]
        self.history: list[str] = []  # lines scrolled off the top
        self.titles: list[str] = []  # OSC strings received (window titles and the like)
        self.row = 0
        self.col = 0
        self._saved = (0, 0)
        self._pending = ""
        self.autowrap = True
        self.replies: list[str] = []  # what the terminal answers (cursor position reports)

    # --- Reading ----------------------------------------------------------------------------

    def lines(self) -> list[str]:
        """The visible lines, trailing spaces removed."""
        return ["".join(row).rstrip() for row in self.grid]

    def text(self) -> str:
        """Scrollback and screen, one string."""
        return "\n".join(self.history + self.lines())

    def cursor_line(self) -> str:
        return "".join(self.grid[min(self.row, self.rows - 1)]).rstrip()

    # --- Writing ----------------------------------------------------------------------------

    def feed(self, data: str) -> None:
        data = self._pending + data
        self._pending = ""
        i = 0
        while i < len(data):
            char = data[i]
            if char == "\x1b":
                consumed = self._escape(data, i)
                if consumed == 0:  # an incomplete sequence: wait for the rest
                    self._pending = data[i:]
                    return
                i += consumed
                continue
            self._char(char)
            i += 1

    def _escape(self, data: str, i: int) -> int:
        if i + 1 >= len(data):
            return 0
        kind = data[i + 1]
        if kind == "[":
            match = _CSI.match(data, i)
            if match is None:
                return 0 if len(data) - i < 32 else 2
            self._csi(match.group(1), match.group(3))
            return match.end() - i
        if kind == "]":
            match = _OSC.match(data, i)
            if match is None:
                return 0 if len(data) - i < 512 else 2
            self.titles.append(match.group(1))
            return match.end() - i
        if kind == "7":
            self._saved = (self.row, self.col)
        elif kind == "8":
            self.row, self.col = self._saved
        elif kind in "()":
            return 3 if i + 2 < len(data) else 0
        return 2  # ESC = , ESC > and other two-byte sequences: no effect on the text

    def _csi(self, params: str, final: str) -> None:
        private = params.startswith("?")
        numbers = [int(p) if p.isdigit() else 0 for p in params.lstrip("?<=>").split(";")]
        n = numbers[0] or 1
        if private and final in "hl" and 7 in numbers:
            self.autowrap = final == "h"  # DECAWM
            return
        if final == "n" and params == "6":  # cursor position request: answer like a terminal
            self.replies.append(f"\x1b[{self.row + 1};{min(self.col, self.cols - 1) + 1}R")
            return
        if private or final in "mhlnrtsu":
            if final == "s":
                self._saved = (self.row, self.col)
            elif final == "u":
                self.row, self.col = self._saved
            return
        if final == "A":
            self.row = max(0, self.row - n)
        elif final == "B":
            self.row = min(self.rows - 1, self.row + n)
        elif final == "C":
            self.col = min(self.cols - 1, self.col + n)
        elif final == "D":
            self.col = max(0, min(self.col, self.cols - 1) - n)
        elif final == "G":
            self.col = min(self.cols - 1, n - 1)
        elif final == "d":
            self.row = min(self.rows - 1, n - 1)
        elif final in "Hf":
            row = numbers[0] or 1
            col = numbers[1] if len(numbers) > 1 and numbers[1] else 1
            self.row, self.col = min(self.rows, row) - 1, min(self.cols, col) - 1
        elif final == "J":
            mode = numbers[0]
            if mode == 0:
                self._erase_line(self.row, self.col, self.cols)
                for row in range(self.row + 1, self.rows):
                    self._erase_line(row, 0, self.cols)
            elif mode == 1:
                for row in range(self.row):
                    self._erase_line(row, 0, self.cols)
                self._erase_line(self.row, 0, self.col + 1)
            else:
                for row in range(self.rows):
                    self._erase_line(row, 0, self.cols)
        elif final == "K":
            mode = numbers[0]
            if mode == 0:
                self._erase_line(self.row, self.col, self.cols)
            elif mode == 1:
                self._erase_line(self.row, 0, self.col + 1)
            else:
                self._erase_line(self.row, 0, self.cols)
        elif final == "X":
            self._erase_line(self.row, self.col, min(self.cols, self.col + n))

    def _erase_line(self, row: int, start: int, end: int) -> None:
        for col in range(start, end):
            self.grid[row][col] = " "

    def _newline(self) -> None:
        if self.row == self.rows - 1:
            self.history.append("".join(self.grid[0]).rstrip())
            del self.grid[0]
            self.grid.append([" "] * self.cols)
        else:
            self.row += 1

    def _char(self, char: str) -> None:
        if char == "\r":
            self.col = 0
        elif char == "\n":
            self._newline()
        elif char == "\b":
            self.col = max(0, self.col - 1)
        elif char == "\t":
            self.col = min(self.cols - 1, (self.col // 8 + 1) * 8)
        elif ord(char) < 0x20 or 0x7F <= ord(char) < 0xA0:
            pass  # BEL and other controls: no glyph
        else:
            if self.col >= self.cols:  # past the last column: wrap, or overwrite it
                if self.autowrap:
                    self.col = 0
                    self._newline()
                else:
                    self.col = self.cols - 1
            self.grid[self.row][self.col] = char
            self.col += 1  # may be == cols: the "pending wrap" position


class Terminal:
    """``argv`` running in a pseudo-terminal of ``rows`` x ``cols``."""

    def __init__(
        self,
        argv: list[str],
        *,
        env: dict[str, str],
        cwd: str,
        rows: int = 30,
        cols: int = 120,
    ) -> None:
        self.screen = Screen(rows, cols)
        self.raw: list[str] = []
        self.child = pexpect.spawn(
            argv[0],
            argv[1:],
            env=env,
            cwd=cwd,
            dimensions=(rows, cols),
            encoding="utf-8",
            codec_errors="replace",
            timeout=10,
        )
        self.child.delaybeforesend = None

    def raw_output(self) -> str:
        return "".join(self.raw)

    def _pump(self, timeout: float) -> bool:
        """Read what is available (waiting up to ``timeout``); False at end of file."""
        try:
            data = self.child.read_nonblocking(65536, timeout=timeout)
        except pexpect.TIMEOUT:
            return True
        except pexpect.EOF:
            return False
        self.raw.append(data)
        self.screen.feed(data)
        while self.screen.replies:
            self.child.send(self.screen.replies.pop(0))
        return True

    def wait(self, predicate: Callable[[Screen], bool], what: str, timeout: float = 10.0) -> None:
        """Read output until ``predicate(screen)`` holds; fail after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not predicate(self.screen):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out waiting for {what}; screen:\n" + self.dump())
            if not self._pump(min(left, 0.2)) and not predicate(self.screen):
                raise AssertionError(f"the program ended before {what}; screen:\n" + self.dump())

    def wait_text(self, text: str, timeout: float = 10.0) -> None:
        """Wait until ``text`` is on the screen or in the scrollback."""
        self.wait(lambda screen: text in screen.text(), repr(text), timeout)

    def wait_count(self, text: str, count: int, timeout: float = 10.0) -> None:
        """Wait until ``text`` occurs ``count`` times on screen and in the scrollback."""
        self.wait(lambda screen: screen.text().count(text) >= count, f"{count} x {text!r}", timeout)

    def wait_prompt(self, prefix: str, timeout: float = 10.0) -> None:
        """Wait until the cursor's line starts with ``prefix`` (a prompt awaiting input)."""
        self.wait(
            lambda screen: screen.cursor_line().startswith(prefix), f"prompt {prefix!r}", timeout
        )

    def send(self, text: str) -> None:
        self.child.send(text)

    def send_bytes(self, data: bytes) -> None:
        """Type raw bytes, such as a Latin-1 terminal sends for "é" (not UTF-8)."""
        os.write(self.child.child_fd, data)

    def kill(self, signum: int) -> None:
        """Send ``signum`` to the program (SIGHUP is what closing a terminal window sends)."""
        self.child.kill(signum)

    def hang_up(self, timeout: float = 15.0) -> int:
        """Close the terminal, as closing its window does: the master side of the pty goes, so
        the kernel sends SIGHUP to the program and its reads and writes on the terminal fail.
        Returns its exit status."""
        proc = self.child.ptyproc
        proc.fileobj.close()  # the master side; pexpect must not touch it afterwards
        proc.closed = True
        self.child.closed = True
        deadline = time.monotonic() + timeout
        while proc.isalive():  # reaps the child when it has ended
            if time.monotonic() > deadline:
                proc.kill(9)
                raise AssertionError("the program did not exit after its terminal closed")
            time.sleep(0.05)
        assert proc.exitstatus is not None, f"killed by signal {proc.signalstatus}"
        return int(proc.exitstatus)

    def wait_exit(self, timeout: float = 15.0) -> int:
        """Wait for the program to end; its exit status."""
        deadline = time.monotonic() + timeout
        while self._pump(max(0.0, min(0.2, deadline - time.monotonic()))):
            if time.monotonic() > deadline:
                raise AssertionError("the program did not exit; screen:\n" + self.dump())
        self.child.close()
        assert self.child.exitstatus is not None, f"killed by signal {self.child.signalstatus}"
        return self.child.exitstatus

    def dump(self) -> str:
        return "\n".join(f"|{line}" for line in self.screen.history[-20:] + self.screen.lines())

    def close(self) -> None:
        if self.child.closed:
            return
        if self.child.isalive():
            self.child.terminate(force=True)
        self.child.close()
