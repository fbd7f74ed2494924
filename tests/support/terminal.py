"""Driving a command the way a person at a terminal does: a pseudo-terminal of a given size that is the
command's controlling terminal, so typing Ctrl-C (``\\x03``) makes the terminal send SIGINT to it."""

from __future__ import annotations

import fcntl
import os
import re
import struct
import subprocess
import termios
import threading
import time
from collections.abc import Callable, Sequence

ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][A-Z0-9]|\x1b[=>]")


def strip_ansi(text: str) -> str:
    return ANSI.sub("", text).replace("\r", "")


class Terminal:
    """``argv`` running in a new session whose controlling terminal is a pty of ``columns`` x ``rows``.

    Everything it writes is collected with the time it arrived (``chunks``), so a test can tell what
    the screen showed while the command was running, not only at the end.
    """

    def __init__(
        self,
        argv: Sequence[str],
        env: dict[str, str],
        cwd: str | os.PathLike,
        columns: int = 80,
        rows: int = 40,
    ):
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        env = {
            **env,
            "COLUMNS": str(columns),
            "LINES": str(rows),
            "TERM": env.get("TERM") or "xterm-256color",
        }

        def controlling_terminal() -> None:  # runs in the child between fork and exec
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.process = subprocess.Popen(
            list(argv),
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            cwd=cwd,
            preexec_fn=controlling_terminal,
            close_fds=True,
        )
        os.close(slave)
        self.master = master
        self.started = time.monotonic()
        self.chunks: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:  # EIO once the last process holding the terminal is gone
                break
            if not data:
                break
            with self._lock:
                self.chunks.append((time.monotonic() - self.started, data.decode("utf-8", "replace")))

    @property
    def text(self) -> str:
        with self._lock:
            return "".join(chunk for _, chunk in self.chunks)

    @property
    def plain(self) -> str:
        return strip_ansi(self.text)

    def type(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def wait_for(self, predicate: Callable[[str], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self.plain):
            if self.process.poll() is not None:
                time.sleep(0.2)  # let the reader catch up with the last output
                if predicate(self.plain):
                    return
                raise AssertionError(
                    f"the command ended (status {self.process.returncode}) before {what}:\n{self.plain[-4000:]}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what} within {timeout} s:\n{self.plain[-4000:]}")
            time.sleep(0.05)

    def wait(self, timeout: float) -> int:
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=5)
        os.close(self.master)
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
