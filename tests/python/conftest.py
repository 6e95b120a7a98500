"""Fixtures: a real kvtierd per test module on a socket in a temporary directory.

The daemon binary comes from $KVTIER_KVTIERD (ctest sets it), else build/bin/kvtierd. The daemon
is ready when it prints its "kvtierd ready" line; it is stopped (SIGTERM, then SIGKILL) after the
module's tests.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import tempfile
import threading

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def kvtierd_path() -> str:
    path = os.environ.get("KVTIER_KVTIERD") or str(ROOT / "build" / "bin" / "kvtierd")
    if not os.access(path, os.X_OK):
        pytest.skip(f"no kvtierd at {path} (build it first)")
    return path


class Daemon:
    """A kvtierd child process. `socket` is its client socket path."""

    def __init__(self, extra_args: list[str] | None = None, ready_timeout_s: float = 30.0):
        self.dir = tempfile.TemporaryDirectory(prefix="kvtier-py-")
        self.socket = os.path.join(self.dir.name, "kvtier.sock")
        self.log_path = os.path.join(self.dir.name, "kvtierd.log")
        args = [kvtierd_path(), "--socket", self.socket, "--dram-capacity", "64MiB"]
        args += extra_args or []
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=self._log, cwd=self.dir.name
        )
        self.ready_line = self._wait_ready(ready_timeout_s)

    def _wait_ready(self, timeout_s: float) -> str:
        found: list[str] = []
        ready = threading.Event()

        def read() -> None:
            # Keeps draining stdout after the ready line so the daemon never blocks on the pipe.
            assert self.proc.stdout is not None
            for raw in self.proc.stdout:
                line = raw.decode(errors="replace")
                if not found and "kvtierd ready" in line:
                    found.append(line.strip())
                    ready.set()
            ready.set()  # EOF: the daemon exited

        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()
        ready.wait(timeout_s)
        if not found:
            self.stop()
            raise RuntimeError(f"kvtierd not ready in {timeout_s}s; log:\n{self.log()}")
        return found[0]

    def log(self) -> str:
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()
        self.dir.cleanup()


@pytest.fixture(scope="module")
def daemon():
    d = Daemon()
    yield d
    d.stop()


@pytest.fixture(scope="module")
def client(daemon):
    import kvtier

    return kvtier.Client(daemon.socket)


def pytest_report_header(config):
    return f"python {sys.version.split()[0]} at {sys.executable}"
