#!/usr/bin/env python3
"""Regression tests for the command-line defects a hostile tester found
(issue 9: 2, 3, 5, 6, 7, 8, 9, 11, 12, 14, 15). Each failed before its fix.

usage: test_cli_hostile.py PATH/TO/llmring

The helpers (runner, mock process, temporary directories) are those of
test_cli_batch.py. Exits 0 when every test passed (or was skipped), 1 otherwise.
"""
import http.server
import json
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_cli_batch as base  # noqa: E402
from test_cli_batch import Tmp, chat_line, write_lines, read_output, by_id  # noqa: E402

TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


def run(args, **kw):
    return base.run(args, **kw)


def files_in(t):
    return sorted(os.listdir(t.dir.name))


class Scripted:
    """An HTTP server whose reply each test writes: reply(handler, path,
    body) sends whatever it likes. Records (path, headers) per request."""

    def __init__(self, reply):
        self.requests = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                outer.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
                try:
                    reply(self, self.path, body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base = "http://127.0.0.1:%d/v1" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def send_json(h, status, doc):
    data = json.dumps(doc).encode()
    h.send_response(status)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", str(len(data)))
    h.end_headers()
    h.wfile.write(data)


def completion(content):
    return {"id": "chatcmpl-x", "object": "chat.completion", "model": "gpt-4o-mini",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


def run_on_pty(args, env, timeout=30):
    """llmring with stdout and stderr on one pseudo-terminal; (status, bytes)."""
    import pty
    master, slave = pty.openpty()
    proc = subprocess.Popen([base.LLMRING] + args, stdin=subprocess.DEVNULL, stdout=slave,
                            stderr=slave, env=env)
    os.close(slave)
    chunks = []
    deadline = time.time() + timeout
    try:
        while time.time() < deadline:
            try:
                data = os.read(master, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        status = proc.wait(timeout=max(1, deadline - time.time()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return status, b"".join(chunks)


# ---- 2: input reads ------------------------------------------------------------

@test
def line_over_the_cap_is_an_invalid_input_line_and_the_next_is_sent():
    with Tmp() as t:
        long_line = chat_line("big", "x" * 5000)
        # The long line first (whole in one read), then arriving over
        # several reads, then a short one without a final newline.
        lines = [long_line, chat_line("a"), chat_line("huge", "y" * 300000), chat_line("b")]
        write_lines(t.path("in.jsonl"), lines, final_newline=False)
        p = run(["batch", t.path("in.jsonl"), "-o", t.path("out.jsonl"), "--mock", "--quiet",
                 "--max-line-bytes", "1000"])
        assert p.returncode == 1, p.stderr
        out = read_output(t.path("out.jsonl"))
        bad = sorted((l["input_line"], l["error"]["code"]) for l in out if "input_line" in l)
        assert bad == [(1, "invalid_input"), (3, "invalid_input")], out
        msg = [l for l in out if "input_line" in l][0]["error"]["message"]
        assert "1000 bytes" in msg and "--max-line-bytes" in msg, msg
        ok = by_id(out)
        assert sorted(ok) == ["a", "b"] and all(l["error"] is None for l in ok.values()), ok


@test
def zero_device_as_input_does_not_grow_memory():
    with Tmp() as t:
        proc = subprocess.Popen([base.LLMRING, "batch", "/dev/zero", "-o", t.path("out.jsonl"),
                                 "--mock", "--quiet", "--max-line-bytes", "100000"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                env=base.clean_env())
        try:
            time.sleep(1.5)
            assert proc.poll() is None, proc.stderr.read()
            with open("/proc/%d/status" % proc.pid) as f:
                rss = [int(l.split()[1]) for l in f if l.startswith("VmRSS:")][0]
            # An endless line is read past chunk by chunk, never held.
            limit = 200000 if "Sanitizer" in open("/proc/%d/maps" % proc.pid).read() else 60000
            assert rss < limit, "%d KiB resident after reading /dev/zero" % rss
        finally:
            proc.kill()
            proc.wait()
            proc.stderr.close()


@test
def read_error_on_the_input_is_status_2_with_the_reason_and_no_output():
    # /proc/self/mem read at offset 0 fails with EIO: a read error, not an end.
    with Tmp() as t:
        for extra in (["--mock"], ["--base-url", "http://127.0.0.1:9/v1"]):
            p = run(["batch", "/proc/self/mem", "-o", t.path("out.jsonl")] + extra)
            assert p.returncode == 2, (extra, p.returncode, p.stderr)
            assert "cannot read /proc/self/mem" in p.stderr and "rror" in p.stderr, p.stderr
            assert files_in(t) == [], files_in(t)


@test
def directory_as_input_says_so_and_creates_nothing():
    with Tmp() as t:
        os.mkdir(t.path("d"))
        p = run(["batch", t.path("d"), "-o", t.path("out.jsonl"), "--mock"])
        assert p.returncode == 2 and "is a directory" in p.stderr, p.stderr
        assert files_in(t) == ["d"]


# ---- 3: the same file twice ------------------------------------------------------

@test
def input_output_stats_and_cache_must_be_different_files():
    with Tmp() as t:
        write_lines(t.path("in.jsonl"), [chat_line("a"), chat_line("b")])
        before = open(t.path("in.jsonl"), "rb").read()
        os.link(t.path("in.jsonl"), t.path("hard.jsonl"))
        os.symlink("in.jsonl", t.path("soft.jsonl"))
        write_lines(t.path("out.jsonl"), [])
        cases = [
            (["-o", t.path("in.jsonl")], "output (-o) is the input"),
            (["-o", t.path("hard.jsonl")], "output (-o) is the input"),
            (["-o", t.path("soft.jsonl"), "--retry-errors"], "output (-o) is the input"),
            (["-o", t.path("out.jsonl"), "--stats", t.path("in.jsonl")], "stats file"),
            (["-o", t.path("out.jsonl"), "--stats", t.path("out.jsonl")], "stats file"),
            (["-o", t.path("out.jsonl"), "--stats", t.path("soft.jsonl")], "stats file"),
            # SQLite would refuse the JSONL, but the output or stats writer would first
            # truncate a cache named as either.
            (["-o", t.path("out.jsonl"), "--cache", t.path("hard.jsonl")], "cache (--cache) is the input"),
            (["-o", t.path("out.jsonl"), "--cache", t.path("out.jsonl")], "cache (--cache) is the output"),
            (["-o", t.path("out.jsonl"), "--stats", t.path("s.json"), "--cache", t.path("s.json")],
             "cache (--cache) is the stats file"),
        ]
        for args, why in cases:
            p = run(["batch", t.path("in.jsonl"), "--mock"] + args)
            assert p.returncode == 2 and why in p.stderr, (args, p.returncode, p.stderr)
            assert open(t.path("in.jsonl"), "rb").read() == before, args
            assert os.path.getsize(t.path("out.jsonl")) == 0, args
        assert files_in(t) == ["hard.jsonl", "in.jsonl", "out.jsonl", "soft.jsonl"]


@test
def unwritable_stats_path_is_refused_before_the_run():
    with Tmp() as t:
        write_lines(t.path("in.jsonl"), [chat_line("a")])
        p = run(["batch", t.path("in.jsonl"), "-o", t.path("out.jsonl"), "--mock",
                 "--stats", t.path("no/such/dir/s.json")])
        assert p.returncode == 2 and "cannot write the stats file" in p.stderr, p.stderr
        assert "incomplete" not in p.stderr, p.stderr
        assert files_in(t) == ["in.jsonl"]


# ---- 5: a mixed batch under one base URL -----------------------------------------

@test
def each_provider_gets_its_own_key_under_a_base_url():
    def reply(h, path, body):
        send_json(h, 200, completion("ok"))
    keys = {"OPENAI_API_KEY": "sk-openai-K1", "ANTHROPIC_API_KEY": "sk-ant-K2",
            "GEMINI_API_KEY": "gm-K3"}
    with Tmp() as t, Scripted(reply) as srv:
        models = ["openai/gpt-4o-mini", "anthropic/claude-haiku-4-5", "gemini/gemini-2.0-flash",
                  "ollama/qwen3:4b"]
        write_lines(t.path("in.jsonl"), [chat_line("r%d" % i, model=m) for i, m in enumerate(models)])
        run(["batch", t.path("in.jsonl"), "-o", t.path("out.jsonl"), "--base-url", srv.base,
             "--max-retries", "0", "--quiet"], env=base.clean_env(**keys))
        seen = {path: hdrs for path, hdrs in srv.requests}
        assert sorted(seen) == ["/api/chat", "/v1/chat/completions", "/v1/messages",
                                "/v1/models/gemini-2.0-flash:generateContent"], sorted(seen)
        own = {"/v1/chat/completions": ("authorization", "Bearer sk-openai-K1"),
               "/v1/messages": ("x-api-key", "sk-ant-K2"),
               "/v1/models/gemini-2.0-flash:generateContent": ("x-goog-api-key", "gm-K3")}
        for path, hdrs in seen.items():
            if path in own:
                name, value = own[path]
                assert hdrs.get(name) == value, (path, hdrs)
            sent = " ".join(hdrs.values())
            others = [k for env, k in keys.items() if k in sent and own.get(path, ("", ""))[1] not in (k, "Bearer " + k)]
            assert not others, (path, others)


@test
def ollama_and_gemini_under_a_v1_base_url_reach_their_native_paths():
    with Tmp() as t, base.MockProcess() as mock:
        models = ["openai/gpt-4o-mini", "anthropic/claude-haiku-4-5", "ollama/qwen3:4b",
                  "gemini/gemini-2.0-flash"]
        write_lines(t.path("in.jsonl"), [chat_line("r%d" % i, model=m) for i, m in enumerate(models)])
        for b in (mock.base, mock.url):
            if os.path.exists(t.path("out.jsonl")):
                os.unlink(t.path("out.jsonl"))
            p = run(["batch", t.path("in.jsonl"), "-o", t.path("out.jsonl"), "--base-url", b,
                     "--max-retries", "0", "--quiet"])
            assert p.returncode == 0, (b, p.stderr, open(t.path("out.jsonl")).read())


# ---- 6, 7: start-up errors ------------------------------------------------------

@test
def start_up_errors_say_what_is_wrong_and_create_nothing():
    with Tmp() as t:
        write_lines(t.path("in.jsonl"), [chat_line("a")])
        cases = [
            (["--base-url", "http://127.0.0.1:99999/v1"], {}, "port"),
            (["--base-url", "http://user:pa55word@127.0.0.1/v1"], {}, "credentials"),
            (["--base-url", "http://127.0.0.1/v1 x"], {}, "invalid character"),
            ([], {"OPENAI_API_KEY": "sk-abc\n"}, "OPENAI_API_KEY contains a newline"),
            (["--base-url", "http://127.0.0.1:9/v1"], {"ANTHROPIC_API_KEY": "a\rb"},
             "ANTHROPIC_API_KEY contains a carriage return"),
        ]
        for args, env, why in cases:
            p = run(["batch", t.path("in.jsonl"), "-o", t.path("out.jsonl")] + args,
                    env=base.clean_env(**env))
            assert p.returncode == 2 and why in p.stderr, (args, p.stderr)
            assert "pa55word" not in p.stderr and "sk-abc" not in p.stderr, p.stderr
            assert "check the base URL" not in p.stderr, p.stderr
            assert files_in(t) == ["in.jsonl"], (args, files_in(t))


@test
def engine_start_failures_say_which_file_or_variable():
    with Tmp() as t:
        write_lines(t.path("in.jsonl"), [chat_line("r1")])
        with open(t.path("prices.json"), "w") as f:
            f.write('{"version": 1, "prices": {"x": 1')
        cases = [
            ({"LLMRING_PRICES": t.path("prices.json")}, "prices file " + t.path("prices.json") + ": not valid JSON"),
            ({"LLMRING_PRICES": t.path("missing.json")}, "prices file " + t.path("missing.json") + ": cannot open"),
            ({"LLMRING_MAX_BUFFERED_BYTES": "lots"}, "LLMRING_MAX_BUFFERED_BYTES=lots"),
        ]
        for env, why in cases:
            p = run(["batch", t.path("in.jsonl"), "-o", t.path("out.jsonl"), "--mock"],
                    env=base.clean_env(**env))
            assert p.returncode == 2 and "cannot start the engine: " + why in p.stderr, (env, p.stderr)
            assert files_in(t) == ["in.jsonl", "prices.json"], (env, files_in(t))


@test
def tiny_fd_limit_names_the_limit_and_more_than_enough_runs():
    import resource

    def limit(n):
        return lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))
    with Tmp() as t:
        write_lines(t.path("in.jsonl"), [chat_line("r%d" % i) for i in range(50)])
        p = subprocess.run([base.LLMRING, "batch", t.path("in.jsonl"), "-o", t.path("out.jsonl"),
                            "--mock"], capture_output=True, text=True, env=base.clean_env(),
                           preexec_fn=limit(8), timeout=60)
        assert p.returncode == 2 and "ulimit -n" in p.stderr, p.stderr
        assert "system error" not in p.stderr and files_in(t) == ["in.jsonl"], p.stderr
        # Short of what --concurrency wants, but room for some: a note, then
        # every line succeeds on fewer connections.
        p = subprocess.run([base.LLMRING, "batch", t.path("in.jsonl"), "-o", t.path("out.jsonl"),
                            "--mock", "--concurrency", "200"], capture_output=True, text=True,
                           env=base.clean_env(), preexec_fn=limit(48), timeout=60)
        assert p.returncode == 0 and "note:" in p.stderr, p.stderr
        assert len(by_id(read_output(t.path("out.jsonl")))) == 50


# ---- 8: editing the input between runs ---------------------------------------------

@test
def prepending_a_line_to_the_input_does_not_mark_it_done():
    with Tmp() as t:
        write_lines(t.path("in.jsonl"), ["garbage", chat_line("a")])
        args = ["batch", t.path("in.jsonl"), "-o", t.path("out.jsonl"), "--mock", "--quiet"]
        assert run(args).returncode == 1
        # Line 1 is now a new, valid request; the garbage moved to line 2.
        write_lines(t.path("in.jsonl"), [chat_line("new"), "garbage", chat_line("a")])
        p = run(args)
        out = read_output(t.path("out.jsonl"))
        ok = by_id(out)
        assert "new" in ok and ok["new"]["error"] is None, out
        assert sorted(ok) == ["a", "new"], out
        # Unusable lines are matched by line number and content (a hash of
        # the line): the garbage, now line 2, gets its own outcome again.
        bad = [(l["input_line"], l["input_hash"]) for l in out if "input_line" in l]
        assert [n for n, _ in bad] == [1, 2] and bad[0][1] == bad[1][1], out
        assert p.returncode == 1, p.stderr
        # A third run changes nothing: every line has its outcome.
        assert run(args).returncode == 1
        assert len(read_output(t.path("out.jsonl"))) == len(out)


# ---- 9: deadlines -------------------------------------------------------------------

@test
def deadlines_below_a_millisecond_are_refused_at_once():
    with Tmp() as t:
        write_lines(t.path("in.jsonl"), [chat_line("a")])
        for flag in ("--timeout", "--connect-timeout", "--idle-timeout"):
            for value in ("1e-12", "0.0005", "0", "-1", "nan", "inf", "1e400"):
                start = time.time()
                p = run(["batch", t.path("in.jsonl"), "-o", t.path("out.jsonl"), "--mock",
                         flag, value], timeout=20)
                assert p.returncode == 2 and flag in p.stderr, (flag, value, p.stderr)
                assert time.time() - start < 10, (flag, value)
                p = run(["chat", "--base-url", "http://127.0.0.1:9/v1", flag, value, "hi"],
                        timeout=20)
                assert p.returncode == 2 and flag in p.stderr, (flag, value, p.stderr)
        assert files_in(t) == ["in.jsonl"]


# ---- 11: server text on a terminal ------------------------------------------------

EVIL = "A\x1b]0;pwned\x07B\x1b[2JC\x9bD\x1b]52;c;aGk=\x07E\u00e9\tF"


@test
def chat_shows_control_characters_on_a_terminal_and_pipes_them_exactly():
    def reply(h, path, body):
        if b"errorplease" in body:
            send_json(h, 400, {"error": {"message": "bad " + EVIL, "type": "x"}})
        else:
            send_json(h, 200, completion(EVIL))
    with Scripted(reply) as srv:
        env = base.clean_env()
        status, screen = run_on_pty(["chat", "--no-stream", "--base-url", srv.base, "hi"], env)
        assert status == 0, screen
        assert b"\x1b" not in screen and b"\x07" not in screen and b"\xc2\x9b" not in screen, screen
        assert b"A^[]0;pwned" in screen and "E\u00e9\tF".encode() in screen, screen
        status, screen = run_on_pty(["chat", "--no-stream", "--base-url", srv.base,
                                     "errorplease"], env)
        assert status == 1 and b"bad A" in screen and b"\x1b" not in screen, screen
        # Piped, the reply is the server's text byte for byte.
        p = subprocess.run([base.LLMRING, "chat", "--no-stream", "--base-url", srv.base, "hi"],
                           capture_output=True, env=env, timeout=30)
        assert p.returncode == 0 and EVIL.encode() in p.stdout, p.stdout


@test
def streamed_chat_is_escaped_on_a_terminal_too():
    def reply(h, path, body):
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.send_header("Connection", "close")
        h.end_headers()
        for piece in (EVIL[:3], EVIL[3:9], EVIL[9:]):
            chunk = {"id": "c", "object": "chat.completion.chunk", "model": "m",
                     "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
            h.wfile.write(("data: " + json.dumps(chunk) + "\n\n").encode())
            h.wfile.flush()
        h.wfile.write(b"data: [DONE]\n\n")
        h.wfile.flush()
    with Scripted(reply) as srv:
        status, screen = run_on_pty(["chat", "--base-url", srv.base, "hi"], base.clean_env())
        assert status == 0, screen
        assert b"\x1b" not in screen and b"\x07" not in screen, screen
        assert b"A^[]0;pwned" in screen, screen


# ---- 12: stale rewrite files ------------------------------------------------------

@test
def stale_retry_files_of_this_output_are_removed_and_nothing_else():
    with Tmp() as t:
        write_lines(t.path("in.jsonl"), [chat_line("a")])
        for name in ("out.jsonl.retry-Ab12Cd", "out.jsonl.retry-ZZZZZZ"):
            with open(t.path(name), "w") as f:
                f.write("x" * 1000)
        keep = ["out.jsonl.retry-short", "out.jsonl.retry-Ab12Cd7", "other.jsonl.retry-Ab12Cd",
                "out.jsonl.retry-LINK00"]
        for name in keep[:3]:
            write_lines(t.path(name), ["keep"])
        os.symlink("in.jsonl", t.path("out.jsonl.retry-LINK00"))
        p = run(["batch", t.path("in.jsonl"), "-o", t.path("out.jsonl"), "--mock"])
        assert p.returncode == 0, p.stderr
        assert "out.jsonl.retry-Ab12Cd" in p.stderr and "removed" in p.stderr, p.stderr
        assert files_in(t) == sorted(["in.jsonl", "out.jsonl"] + keep), files_in(t)


# ---- 14: statuses and messages ------------------------------------------------------

@test
def output_that_cannot_be_written_is_status_2_and_nothing_is_counted_done():
    if not os.path.exists("/dev/full"):
        raise base.Skip("no /dev/full")
    with Tmp() as t:
        write_lines(t.path("in.jsonl"), [chat_line("r%d" % i) for i in range(3)])
        p = run(["batch", t.path("in.jsonl"), "-o", "/dev/full", "--mock",
                 "--stats", t.path("s.json")])
        assert p.returncode == 2, p.stderr
        assert "cannot write /dev/full" in p.stderr and "3 succeeded" not in p.stderr, p.stderr
        assert "incomplete" in p.stderr, p.stderr
        stats = json.load(open(t.path("s.json")))
        assert stats.get("succeeded", 0) == 0, stats


@test
def every_unpriced_model_is_named_in_the_stats():
    with Tmp() as t:
        n = 300
        write_lines(t.path("in.jsonl"), [chat_line("r%d" % i, model="mock/unpriced-%03d" % i)
                                         for i in range(n)])
        p = run(["batch", t.path("in.jsonl"), "-o", t.path("out.jsonl"), "--mock",
                 "--stats", t.path("s.json")])
        assert p.returncode == 0, p.stderr
        stats = json.load(open(t.path("s.json")))
        names = stats["unpriced_models"]
        assert len(names) == n and len(set(names)) == n, len(names)
        assert "more" in p.stderr, p.stderr  # the text summary lists some, then says how many


@test
def ids_with_a_lone_surrogate_escape_are_refused_not_merged():
    with Tmp() as t:
        line = '{"custom_id":"a\\ud800%s","method":"POST","url":"/v1/chat/completions",' \
               '"body":{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}}'
        write_lines(t.path("in.jsonl"), [line % "x", line % "y", chat_line("ok")])
        p = run(["batch", t.path("in.jsonl"), "-o", t.path("out.jsonl"), "--mock", "--quiet"])
        assert p.returncode == 1, p.stderr
        out = read_output(t.path("out.jsonl"))
        bad = [l for l in out if "input_line" in l]
        assert sorted(l["input_line"] for l in bad) == [1, 2], out
        assert all("surrogate" in l["error"]["message"] for l in bad), bad
        assert list(by_id(out)) == ["ok"]


@test
def unusable_response_bodies_are_named_for_what_they_are():
    import gzip
    good = json.dumps(completion("fine")).encode()
    bodies = {
        "gz-header": (gzip.compress(good), {"Content-Encoding": "gzip"}, "Content-Encoding: gzip"),
        "gz-bytes": (gzip.compress(good), {}, "gzip-compressed"),
        "bom": (b"\xef\xbb\xbf" + good, {}, "byte order mark"),
        "deep": (b'{"a":' + b"[" * 200 + b"]" * 200 + b"}", {}, "deeper than 128"),
        "utf8": (good.replace(b"fine", b"fi\xffne"), {}, "not valid UTF-8 (byte"),
        "array": (b"[1,2]", {}, "a JSON array"),
        "empty": (b"", {}, "empty"),
        "junk": (b"{nope", {}, "not valid JSON"),
    }

    def reply(h, path, body):
        kind = json.loads(body)["messages"][0]["content"]
        data, headers, _ = bodies[kind]
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        for k, v in headers.items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)
    with Tmp() as t, Scripted(reply) as srv:
        write_lines(t.path("in.jsonl"), [chat_line(k, k) for k in bodies])
        p = run(["batch", t.path("in.jsonl"), "-o", t.path("out.jsonl"), "--base-url", srv.base,
                 "--max-retries", "0", "--quiet"])
        assert p.returncode == 1, p.stderr
        out = by_id(read_output(t.path("out.jsonl")))
        for kind, (_, _, words) in bodies.items():
            err = out[kind]["error"]
            assert err and words in err["message"], (kind, err)
        assert all(h.get("accept-encoding") == "identity" for _, h in srv.requests), srv.requests


@test
def a_finished_request_is_written_while_others_are_still_running():
    # A kill loses only what was not yet written: outcomes must not wait
    # in memory for a whole round of completions.
    release = threading.Event()

    def reply(h, path, body):
        if b"slow" in body:
            release.wait(30)
        send_json(h, 200, completion("ok"))
    with Tmp() as t, Scripted(reply) as srv:
        write_lines(t.path("in.jsonl"), [chat_line("fast")] +
                    [chat_line("s%d" % i, "slow") for i in range(9)])
        proc = subprocess.Popen([base.LLMRING, "batch", t.path("in.jsonl"), "-o",
                                 t.path("out.jsonl"), "--base-url", srv.base, "--quiet"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env=base.clean_env())
        try:
            deadline = time.time() + 20
            while time.time() < deadline:
                if os.path.exists(t.path("out.jsonl")) and os.path.getsize(t.path("out.jsonl")):
                    break
                time.sleep(0.05)
            out = read_output(t.path("out.jsonl"))
            assert [l["custom_id"] for l in out] == ["fast"], out
            assert proc.poll() is None
        finally:
            proc.kill()
            proc.wait()
            release.set()


# ---- 15: chat deadlines -------------------------------------------------------------

@test
def chat_idle_timeout_ends_a_stream_of_keep_alive_comments():
    stop = threading.Event()

    def reply(h, path, body):
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.send_header("Connection", "close")
        h.end_headers()
        while not stop.is_set():
            h.wfile.write(b": keep-alive\n\n")
            h.wfile.flush()
            time.sleep(0.1)
    with Scripted(reply) as srv:
        start = time.time()
        p = run(["chat", "--base-url", srv.base, "--idle-timeout", "1", "--connect-timeout", "2",
                 "hi"], timeout=60)
        took = time.time() - start
        stop.set()
        assert p.returncode == 1 and "timed out" in p.stderr.lower() or "timeout" in p.stderr.lower(), p.stderr
        assert took < 30, took  # a hang guard, not a timing test


def main():
    return base.run_tests(TESTS, "test_cli_hostile.py")


if __name__ == "__main__":
    sys.exit(main())
