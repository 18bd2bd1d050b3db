"""Setup for the tests of pyllmring._batch (tools/python/pyllmring/_batch.c).

The built module (LLMRING_BATCH_EXT, set by tools/python/batch/meson.build)
is linked into a temporary `pyllmring` package put first on sys.path, so the
tests import it as `pyllmring._batch` before the package's Python layer
exists beside it. LLMRING_EXE is the built `llmring`, for comparisons.
The run ends with "N tests, N passed, N failed" (tools/test.sh counts it).
"""
import os
import shutil
import sys
import tempfile

_ext = os.environ.get("LLMRING_BATCH_EXT")
_pkg_root = None
if _ext and os.path.exists(_ext):
    _pkg_root = tempfile.mkdtemp(prefix="pyllmring-batch-")
    pkg = os.path.join(_pkg_root, "pyllmring")
    os.mkdir(pkg)
    open(os.path.join(pkg, "__init__.py"), "w").close()
    os.symlink(os.path.abspath(_ext), os.path.join(pkg, os.path.basename(_ext)))
    sys.path.insert(0, _pkg_root)


def pytest_unconfigure(config):
    if _pkg_root:
        shutil.rmtree(_pkg_root, ignore_errors=True)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    stats = terminalreporter.stats
    passed = len(stats.get("passed", []))
    failed = len(stats.get("failed", [])) + len(stats.get("error", []))
    skipped = len(stats.get("skipped", []))
    terminalreporter.write_line(
        f"{passed + failed + skipped} tests, {passed} passed, {failed} failed")
