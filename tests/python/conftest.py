"""Shared by the pyllmring tests: `llmring mock` as its own process, and the
tally line the suite's counter reads ("N tests, N passed, N failed").

LLMRING_BIN names the llmring executable (meson test sets it; else
build/llmring); PYTHONPATH must reach the package (meson test sets it to
<builddir>/tools/python).
"""
import os
import subprocess

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


def llmring_bin():
    return os.environ.get("LLMRING_BIN") or os.path.join(HERE, "..", "..", "build", "llmring")


class MockServer:
    """`llmring mock --listen 127.0.0.1:0 ARGS...`; .url once it listens."""

    def __init__(self, *args):
        self.proc = subprocess.Popen([llmring_bin(), "mock", "--listen", "127.0.0.1:0", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline().strip()
        if not line.startswith("listening on "):
            self.close()
            raise RuntimeError(f"llmring mock did not start: {line!r}")
        self.url = line.split()[-1]

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()


@pytest.fixture(scope="session")
def mock():
    m = MockServer()
    yield m
    m.close()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    s = terminalreporter.stats
    passed = len(s.get("passed", []))
    failed = len(s.get("failed", [])) + len(s.get("error", []))
    terminalreporter.write_line(f"{passed + failed} tests, {passed} passed, {failed} failed")
