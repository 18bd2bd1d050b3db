"""pyllmring._batch: the `llmring batch` job and the mock server in process.

run_batch writes what the command writes, reports progress with counts that
only grow, stops on KeyboardInterrupt (from the progress callback or a real
SIGINT) leaving an output that a second run completes, runs again in the same
process, and returns 2 for usage errors. Mock is `llmring mock` on a thread.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time

import pytest

_batch = pytest.importorskip("pyllmring._batch")
LLMRING = os.environ.get("LLMRING_EXE")


def chat_line(cid, content="Hello there", model="gpt-4o-mini"):
    return json.dumps({"custom_id": cid, "method": "POST", "url": "/v1/chat/completions",
                       "body": {"model": model,
                                "messages": [{"role": "user", "content": content}]}})


def write_input(path, n, prefix="r"):
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            f.write(chat_line(f"{prefix}{i}", content=f"question number {i}") + "\n")
    return [f"{prefix}{i}" for i in range(n)]


def read_output(path):
    """Every line parsed; the file must be whole lines."""
    with open(path, "rb") as f:
        data = f.read()
    assert data == b"" or data.endswith(b"\n"), "output does not end with a newline"
    return [json.loads(raw) for raw in data.decode("utf-8").split("\n")[:-1]]


def normalized(path):
    """The output's bytes less what differs between two runs of the same
    input: the run's random id prefix and the mock's created timestamp."""
    with open(path, "rb") as f:
        data = f.read().decode("utf-8")
    data = re.sub(r'"id":"batch_req_[0-9a-f]{16}', '"id":"batch_req_X', data)
    return re.sub(r'"created":\d+', '"created":0', data)


def args(inp, out, url, *more):
    return [str(inp), "-o", str(out), "--base-url", url, "--quiet", *more]


@pytest.fixture
def mock():
    with _batch.Mock() as m:
        yield m


@pytest.fixture
def mock_process():
    """`llmring mock` as its own process; its URL."""
    if not LLMRING:
        pytest.skip("LLMRING_EXE not set")
    p = subprocess.Popen([LLMRING, "mock", "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True)
    try:
        line = p.stdout.readline()
        m = re.match(r"listening on (http://127\.0\.0\.1:\d+)", line)
        assert m, line
        yield m.group(1)
    finally:
        p.send_signal(signal.SIGINT)
        p.wait(timeout=10)


def check_complete(path, ids):
    """Every custom_id exactly once, each a success."""
    lines = read_output(path)
    got = [l["custom_id"] for l in lines]
    assert sorted(got) == sorted(ids), (len(got), len(ids))
    assert all(l["error"] is None for l in lines)
    return lines


# ---- output --------------------------------------------------------------


def test_output_matches_the_command_byte_for_byte(tmp_path):
    if not LLMRING:
        pytest.skip("LLMRING_EXE not set")
    inp = tmp_path / "in.jsonl"
    write_input(inp, 50)
    # One at a time against a fresh mock each: the same request numbers,
    # hence the same generated text, in the same order.
    with _batch.Mock() as m:
        assert _batch.run_batch(args(inp, tmp_path / "py.jsonl", m.url, "--concurrency", "1")) == 0
    with _batch.Mock() as m:
        p = subprocess.run([LLMRING, "batch", *args(inp, tmp_path / "cli.jsonl", m.url,
                                                    "--concurrency", "1")],
                           capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert normalized(tmp_path / "py.jsonl") == normalized(tmp_path / "cli.jsonl")


def test_summary_on_stderr_as_the_command_prints_it(tmp_path, capfd, mock):
    inp = tmp_path / "in.jsonl"
    write_input(inp, 3)
    out = tmp_path / "out.jsonl"
    assert _batch.run_batch([str(inp), "-o", str(out), "--base-url", mock.url]) == 0
    err = capfd.readouterr().err
    assert "llmring batch: 3 requests: 3 succeeded, 0 failed, 0 skipped" in err, err


def test_run_against_mock_process(tmp_path, mock_process):
    inp = tmp_path / "in.jsonl"
    ids = write_input(inp, 200)
    out = tmp_path / "out.jsonl"
    assert _batch.run_batch(args(inp, out, mock_process, "--concurrency", "16")) == 0
    check_complete(out, ids)


def test_builtin_mock_flag_runs_in_process(tmp_path):
    inp = tmp_path / "in.jsonl"
    ids = write_input(inp, 20)
    out = tmp_path / "out.jsonl"
    assert _batch.run_batch([str(inp), "-o", str(out), "--mock", "--quiet"]) == 0
    check_complete(out, ids)


def test_failed_lines_give_status_1(tmp_path):
    inp = tmp_path / "in.jsonl"
    write_input(inp, 10)
    out = tmp_path / "out.jsonl"
    with _batch.Mock(["--fault", "500:1"]) as m:
        assert _batch.run_batch(args(inp, out, m.url, "--max-retries", "0")) == 1
    lines = read_output(out)
    assert len(lines) == 10 and all(l["error"] is not None for l in lines)


# ---- progress --------------------------------------------------------------


MONOTONE = ["submitted", "succeeded", "failed", "retried", "input_tokens", "output_tokens",
            "lines_read", "lines_done", "skipped", "invalid_lines"]


def test_progress_counts_grow_and_end_at_the_total(tmp_path):
    inp = tmp_path / "in.jsonl"
    n = 400
    write_input(inp, n)
    out = tmp_path / "out.jsonl"
    seen = []
    with _batch.Mock(["--ttft-ms", "5"]) as m:
        status = _batch.run_batch(args(inp, out, m.url, "--concurrency", "8"),
                                  progress=seen.append, interval=0.02)
    assert status == 0
    assert len(seen) >= 3, seen
    for a, b in zip(seen, seen[1:]):
        assert a != b  # only changes are reported
        for k in MONOTONE:
            assert b[k] >= a[k], (k, a, b)
    for p in seen:
        assert p["lines_total"] == n
        assert p["succeeded"] + p["failed"] <= p["submitted"] <= p["lines_read"] <= n
        assert p["in_flight"] + p["queued"] == p["lines_read"] - p["lines_done"]
        assert p["in_flight"] <= 8
    last = seen[-1]
    assert last["succeeded"] == n and last["lines_done"] == n and last["in_flight"] == 0
    assert last["output_tokens"] == 16 * n


def test_progress_none_and_interval_checks(tmp_path, mock):
    inp = tmp_path / "in.jsonl"
    write_input(inp, 5)
    out = str(tmp_path / "out.jsonl")
    with pytest.raises(TypeError):
        _batch.run_batch(args(inp, out, mock.url), progress=5)
    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            _batch.run_batch(args(inp, out, mock.url), interval=bad)
    assert not os.path.exists(out)  # refused before the job started
    assert _batch.run_batch(args(inp, out, mock.url), progress=None, interval=5) == 0


# ---- stopping and resuming --------------------------------------------------


def interrupted_then_resumed(tmp_path, stop_how, n=3000):
    """Runs until stop_how stops it mid-job, checks the partial output, runs
    again; returns the partial line count."""
    inp = tmp_path / "in.jsonl"
    ids = write_input(inp, n)
    out = tmp_path / "out.jsonl"
    with _batch.Mock(["--ttft-ms", "2"]) as m:
        with pytest.raises(stop_how.exception):
            _batch.run_batch(args(inp, out, m.url, "--concurrency", "16"),
                             progress=stop_how.progress, interval=0.01)
        partial = read_output(out)
        got = [l["custom_id"] for l in partial]
        assert 0 < len(got) < n, len(got)
        assert len(set(got)) == len(got)
        assert all(l["error"] is None for l in partial)  # cancelled lines are not written
        seen = []
        assert _batch.run_batch(args(inp, out, m.url, "--concurrency", "64"),
                                progress=seen.append) == 0
    assert seen[-1]["skipped"] == len(got)
    assert seen[-1]["submitted"] == n - len(got)
    check_complete(out, ids)
    return len(got)


class RaiseFromProgress:
    exception = KeyboardInterrupt

    def progress(self, p):
        if p["succeeded"] >= 300:
            raise KeyboardInterrupt


def test_keyboard_interrupt_from_progress_leaves_a_resumable_output(tmp_path):
    interrupted_then_resumed(tmp_path, RaiseFromProgress())


class OtherErrorFromProgress:
    exception = ZeroDivisionError

    def progress(self, p):
        if p["succeeded"] >= 300:
            1 / 0


def test_exception_from_progress_stops_and_propagates(tmp_path):
    interrupted_then_resumed(tmp_path, OtherErrorFromProgress())


class RealSigint:
    """A SIGINT sent to the main thread once the job is under way."""
    exception = KeyboardInterrupt

    def __init__(self):
        self.sent = False

    def progress(self, p):
        if not self.sent and p["succeeded"] >= 300:
            self.sent = True
            main = threading.main_thread().ident
            threading.Thread(target=signal.pthread_kill, args=(main, signal.SIGINT)).start()


def test_sigint_leaves_a_resumable_output(tmp_path):
    interrupted_then_resumed(tmp_path, RealSigint())


def test_sigint_to_the_process_stops_the_job(tmp_path):
    inp = tmp_path / "in.jsonl"
    n = 3000
    ids = write_input(inp, n)
    out = tmp_path / "out.jsonl"
    with _batch.Mock(["--ttft-ms", "10"]) as m:  # at least 1.9 s at concurrency 16
        timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
        timer.start()
        t0 = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            _batch.run_batch(args(inp, out, m.url, "--concurrency", "16"))
        assert time.monotonic() - t0 < 10
        timer.join()
        assert len(read_output(out)) < n
        assert _batch.run_batch(args(inp, out, m.url)) == 0
    check_complete(out, ids)


# ---- the process goes on ------------------------------------------------------


def test_two_runs_in_sequence(tmp_path, mock):
    for k in range(2):
        inp = tmp_path / f"in{k}.jsonl"
        ids = write_input(inp, 100, prefix=f"k{k}-")
        out = tmp_path / f"out{k}.jsonl"
        assert _batch.run_batch(args(inp, out, mock.url)) == 0
        check_complete(out, ids)


def test_two_runs_at_once_on_two_threads(tmp_path, mock):
    results = {}

    def run(k):
        inp = tmp_path / f"in{k}.jsonl"
        results[k] = (write_input(inp, 500, prefix=f"t{k}-"),
                      _batch.run_batch(args(inp, tmp_path / f"out{k}.jsonl", mock.url)))

    threads = [threading.Thread(target=run, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in range(2):
        ids, status = results[k]
        assert status == 0
        check_complete(tmp_path / f"out{k}.jsonl", ids)


def test_usage_errors_return_2_and_say_what_the_command_says(tmp_path, capfd):
    cases = [["--bogus"], [], ["in.jsonl"], [str(tmp_path / "missing.jsonl"), "-o",
                                             str(tmp_path / "o.jsonl"), "--mock"],
             ["a", "-o", "b", "--concurrency", "0"]]
    for argv in cases:
        assert _batch.run_batch(argv) == 2
        err = capfd.readouterr().err
        if LLMRING:
            p = subprocess.run([LLMRING, "batch", *argv], capture_output=True, text=True)
            assert p.returncode == 2
            assert err == p.stderr
    assert not os.path.exists(tmp_path / "o.jsonl")
    assert _batch.run_batch(["--help"]) == 0
    assert "usage: llmring batch" in capfd.readouterr().out


def test_bad_argv_types():
    with pytest.raises(TypeError):
        _batch.run_batch("in.jsonl")
    with pytest.raises(TypeError):
        _batch.run_batch(["in.jsonl", 5])
    with pytest.raises(ValueError):
        _batch.run_batch(["in\0.jsonl"])
    with pytest.raises(TypeError):
        _batch.run_batch(42)


def test_path_objects_are_arguments(tmp_path, mock):
    inp = tmp_path / "in.jsonl"
    ids = write_input(inp, 5)
    out = tmp_path / "out.jsonl"
    assert _batch.run_batch([inp, "-o", out, "--base-url", mock.url, "--quiet"]) == 0
    check_complete(out, ids)


def test_a_100000_line_job(tmp_path, mock):
    inp = tmp_path / "in.jsonl"
    n = 100_000
    ids = write_input(inp, n)
    out = tmp_path / "out.jsonl"
    seen = []
    assert _batch.run_batch(args(inp, out, mock.url, "--concurrency", "256"),
                            progress=seen.append) == 0
    lines = check_complete(out, ids)
    assert len(lines) == n
    assert seen[-1]["succeeded"] == n and seen[-1]["lines_total"] == n
    assert mock.requests == n


# ---- Mock ----------------------------------------------------------------


def test_mock_url_port_and_close(tmp_path):
    m = _batch.Mock()
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", m.url)
    assert m.url.endswith(":%d" % m.port) and m.port > 0
    assert not m.closed and m.requests == 0 and m.connections == 0
    inp = tmp_path / "in.jsonl"
    write_input(inp, 3)
    assert _batch.run_batch(args(inp, tmp_path / "out.jsonl", m.url)) == 0
    assert m.requests == 3
    m.close()
    m.close()
    assert m.closed
    with pytest.raises(ValueError):
        m.requests
    with pytest.raises(ValueError):
        with m:
            pass


def test_mock_flags_are_the_command_flags(tmp_path):
    inp = tmp_path / "in.jsonl"
    write_input(inp, 4)
    out = tmp_path / "out.jsonl"
    with _batch.Mock(["--tokens", "3", "--seed=7"]) as m:
        assert _batch.run_batch(args(inp, out, m.url)) == 0
    for l in read_output(out):
        assert l["response"]["body"]["usage"]["completion_tokens"] == 3


def test_mock_bad_flags_raise_value_error():
    for bad, why in [(["--bogus"], "unknown option '--bogus'"),
                     (["--tokens", "x"], "--tokens wants a non-negative integer"),
                     (["--fault", "nope:1"], "unknown fault kind 'nope'"),
                     (["--tls-cert", "a"], "--tls-cert needs --tls-key too"),
                     (["--listen"], "--listen needs a value")]:
        with pytest.raises(ValueError, match=re.escape(why)):
            _batch.Mock(bad)
    with pytest.raises(TypeError):
        _batch.Mock("--tokens")


def test_mock_port_in_use_raises_os_error():
    with _batch.Mock() as m:
        with pytest.raises(OSError, match="cannot listen"):
            _batch.Mock(["--listen", "127.0.0.1:%d" % m.port])


def test_many_mocks_come_and_go():
    for _ in range(20):
        m = _batch.Mock()
        del m  # dealloc stops it
    with _batch.Mock() as m:
        assert m.url


GEN_CERTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "certs",
                         "gen-certs.sh")


def test_mock_serves_https_with_the_tls_flags(tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed (needed to make test certificates)")
    certs = tmp_path / "certs"
    certs.mkdir()
    p = subprocess.run(["bash", GEN_CERTS, str(certs)], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, p.stderr
    inp = tmp_path / "in.jsonl"
    ids = write_input(inp, 10)
    out = tmp_path / "out.jsonl"
    with _batch.Mock(["--tls-cert", str(certs / "server.crt"),
                      "--tls-key", str(certs / "server.key")]) as m:
        assert re.fullmatch(r"https://127\.0\.0\.1:\d+", m.url)
        assert _batch.run_batch(args(inp, out, m.url, "--cacert", str(certs / "ca.crt"))) == 0
    check_complete(out, ids)
    with pytest.raises(ValueError, match="cannot serve HTTPS"):
        _batch.Mock(["--tls-cert", str(certs / "server.crt"),
                     "--tls-key", str(certs / "other.key")])


def test_a_stopped_run_says_so_and_returns_after_the_job_ended(tmp_path, capfd):
    inp = tmp_path / "in.jsonl"
    write_input(inp, 2000)
    out = tmp_path / "out.jsonl"

    def stop(p):
        if p["succeeded"] >= 100:
            raise KeyboardInterrupt

    with _batch.Mock(["--ttft-ms", "2"]) as m:
        with pytest.raises(KeyboardInterrupt):
            _batch.run_batch([str(inp), "-o", str(out), "--base-url", m.url, "--concurrency",
                              "16"], progress=stop, interval=0.01)
        written = len(read_output(out))
        time.sleep(0.2)
        assert len(read_output(out)) == written  # nothing writes after the return
    err = capfd.readouterr().err
    assert "llmring batch: stopped early; the output is incomplete (run again to resume)" in err
