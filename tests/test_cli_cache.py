#!/usr/bin/env python3
"""End-to-end tests of the response cache: `llmring batch --cache` and
`llmring chat --cache` (tests/test_cache.c tests the library's side).

usage: test_cli_cache.py PATH/TO/llmring

The server is test_cli_batch.py's PyServer, which records every request it
gets: a hit must never reach it. Exits 0 when every test passed, 1 otherwise.
"""
import json
import os
import resource
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_cli_batch as base  # noqa: E402
from test_cli_batch import MockProcess, PyServer, Tmp, check_shape, embed_line, read_output, write_lines  # noqa: E402

TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


def run(args, **kw):
    return base.run(args, **kw)


def lines(n, prefix="q"):
    out = []
    for i in range(n):
        out.append(json.dumps({"custom_id": "%s%d" % (prefix, i), "method": "POST",
                               "url": "/v1/chat/completions",
                               "body": {"model": "gpt-4o-mini", "temperature": 1.0, "seed": 3,
                                        "messages": [{"role": "user", "content": "prompt %d" % i}]}}))
    return out


def rewritten(n, prefix="r"):
    """The same requests as lines(n), written differently: keys in another
    order, spaces, 1 for 1.0, an escaped character, a user and metadata."""
    out = []
    for i in range(n):
        out.append('{"url":"/v1/chat/completions","custom_id":"%s%d","method":"POST","body":'
                   '{ "messages" : [ {"content":"prompt %d","role":"\\u0075ser"} ],'
                   ' "seed":3.0, "temperature":1, "user":"u%d", "metadata":{"k":"v"},'
                   ' "model":"gpt-4o-mini" }}' % (prefix, i, i, i))
    return out


def batch(srv, t, inp, out, *extra):
    return run(["batch", t.path(inp), "-o", t.path(out), "--base-url", srv.base,
                "--stats", t.path(out + ".stats")] + list(extra))


def stats(t, out):
    with open(t.path(out + ".stats")) as f:
        return json.load(f)


@test
def batch_run_twice_second_run_is_all_hits_and_sends_nothing():
    with Tmp() as t, PyServer() as srv:
        write_lines(t.path("in.jsonl"), lines(20) + [embed_line("e0")])
        p = batch(srv, t, "in.jsonl", "o1.jsonl", "--cache", t.path("c.db"))
        assert p.returncode == 0, p.stderr
        assert len(srv.requests) == 21
        first = {l["custom_id"]: l for l in read_output(t.path("o1.jsonl"))}
        assert not any(l.get("cached") for l in first.values())
        s1 = stats(t, "o1.jsonl")
        assert s1["cache_hits"] == 0 and s1["cost_saved_usd"] == 0, s1
        p = batch(srv, t, "in.jsonl", "o2.jsonl", "--cache", t.path("c.db"))
        assert p.returncode == 0, p.stderr
        assert len(srv.requests) == 21, "a hit reached the server"
        second = read_output(t.path("o2.jsonl"))
        assert len(second) == 21
        for l in second:
            check_shape(l)
            assert l["cached"] is True, l
            orig = first[l["custom_id"]]
            # The response's own id and body are the stored ones; the line's id is new.
            assert l["response"]["body"] == orig["response"]["body"], l
            assert l["response"]["request_id"] == orig["response"]["request_id"]
            assert l["id"] != orig["id"]
        s2 = stats(t, "o2.jsonl")
        assert s2["cache_hits"] == 21 and s2["succeeded"] == 21, s2
        assert s2["input_tokens"] == 0 and s2["cost_usd"] == 0, s2
        assert abs(s2["cost_saved_usd"] - s1["cost_usd"]) < 1e-12, (s1, s2)
        assert "cache: 21 hits" in p.stderr, p.stderr


@test
def batch_key_ignores_order_spacing_number_form_user_and_metadata():
    with Tmp() as t, PyServer() as srv:
        write_lines(t.path("a.jsonl"), lines(5))
        write_lines(t.path("b.jsonl"), rewritten(5))
        assert batch(srv, t, "a.jsonl", "o1.jsonl", "--cache", t.path("c.db")).returncode == 0
        p = batch(srv, t, "b.jsonl", "o2.jsonl", "--cache", t.path("c.db"))
        assert p.returncode == 0, p.stderr
        assert len(srv.requests) == 5
        assert all(l["cached"] for l in read_output(t.path("o2.jsonl")))
        # Another temperature is another question.
        other = [l.replace('"temperature": 1.0', '"temperature": 0.5') for l in lines(5, "t")]
        write_lines(t.path("c.jsonl"), other)
        assert batch(srv, t, "c.jsonl", "o3.jsonl", "--cache", t.path("c.db")).returncode == 0
        assert len(srv.requests) == 10
        assert not any(l.get("cached") for l in read_output(t.path("o3.jsonl")))


@test
def cache_modes_read_write_off():
    with Tmp() as t, PyServer() as srv:
        write_lines(t.path("in.jsonl"), lines(4))
        db = t.path("c.db")
        # off: sends everything, makes no file.
        assert batch(srv, t, "in.jsonl", "o0.jsonl", "--cache", db, "--cache-mode", "off").returncode == 0
        assert len(srv.requests) == 4 and not os.path.exists(db)
        # write: sends everything and stores it.
        assert batch(srv, t, "in.jsonl", "o1.jsonl", "--cache", db, "--cache-mode", "write").returncode == 0
        assert batch(srv, t, "in.jsonl", "o2.jsonl", "--cache", db, "--cache-mode", "write").returncode == 0
        assert len(srv.requests) == 12
        # read: answers from it; what it lacks is sent and not stored.
        write_lines(t.path("more.jsonl"), lines(4) + lines(6, "n")[4:])
        assert batch(srv, t, "more.jsonl", "o3.jsonl", "--cache", db, "--cache-mode", "read").returncode == 0
        assert len(srv.requests) == 14
        assert batch(srv, t, "more.jsonl", "o4.jsonl", "--cache", db, "--cache-mode", "read").returncode == 0
        assert len(srv.requests) == 16
        assert stats(t, "o4.jsonl")["cache_hits"] == 4
        # readwrite (the default): stores the two, then has all six.
        assert batch(srv, t, "more.jsonl", "o5.jsonl", "--cache", db).returncode == 0
        assert batch(srv, t, "more.jsonl", "o6.jsonl", "--cache", db).returncode == 0
        assert len(srv.requests) == 18
        assert stats(t, "o6.jsonl")["cache_hits"] == 6


@test
def cache_flags_are_checked():
    with Tmp() as t:
        write_lines(t.path("in.jsonl"), lines(1))
        p = run(["batch", t.path("in.jsonl"), "-o", t.path("o"), "--mock", "--cache-mode", "read"])
        assert p.returncode == 2 and "--cache-mode needs --cache" in p.stderr, p.stderr
        p = run(["batch", t.path("in.jsonl"), "-o", t.path("o"), "--mock", "--cache", t.path("c"),
                 "--cache-mode", "sometimes"])
        assert p.returncode == 2 and "readwrite, read, write or off" in p.stderr, p.stderr
        p = run(["chat", "--cache-mode", "write", "hi"])
        assert p.returncode == 2 and "--cache-mode needs --cache" in p.stderr, p.stderr


@test
def chat_with_cache_answers_the_second_time_without_a_request():
    with Tmp() as t, PyServer() as srv:
        args = ["chat", "--base-url", srv.base, "--cache", t.path("c.db"), "say something"]
        p1 = run(args)
        assert p1.returncode == 0, p1.stderr
        assert len(srv.requests) == 1
        p2 = run(args)
        p3 = run(args[:-1] + ["--no-stream", "say something"])
        assert p2.returncode == 0 and p3.returncode == 0, (p2.stderr, p3.stderr)
        assert p1.stdout == p2.stdout == p3.stdout, (p1.stdout, p2.stdout, p3.stdout)
        assert len(srv.requests) == 1, "a hit reached the server"
        # --cache-mode write asks again.
        assert run(args[:-1] + ["--cache-mode", "write", "say something"]).returncode == 0
        assert len(srv.requests) == 2


@test
def corrupt_cache_file_fails_nothing_and_is_reported_once():
    with Tmp() as t, PyServer() as srv:
        with open(t.path("c.db"), "w") as f:
            f.write("not a database\n" * 1000)
        write_lines(t.path("in.jsonl"), lines(10))
        p = batch(srv, t, "in.jsonl", "o.jsonl", "--cache", t.path("c.db"))
        assert p.returncode == 0, p.stderr
        assert len(srv.requests) == 10
        assert p.stderr.count("cannot be used") == 1, p.stderr
        assert "not a database" in p.stderr, p.stderr
        p = run(["chat", "--base-url", srv.base, "--cache", t.path("c.db"), "hi"])
        assert p.returncode == 0 and p.stderr.count("cannot be used") == 1, p.stderr


@test
def a_cache_that_is_not_a_regular_file_is_refused_and_left_alone():
    with Tmp() as t, PyServer() as srv:
        for path in (t.dir.name, "/dev/null"):
            p = run(["chat", "--base-url", srv.base, "--cache", path, "hi"])
            assert p.returncode == 0, p.stderr
            assert p.stderr.count("is not a regular file") == 1, p.stderr
        assert os.listdir(t.dir.name) == [], os.listdir(t.dir.name)
        assert not os.path.exists("/dev/null-journal") and not os.path.exists("/dev/null-wal")


@test
def full_disk_fails_nothing_and_is_reported_once():
    def small_files():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes fail with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (8192, 8192))

    with Tmp() as t, PyServer() as srv:
        for i in range(2):
            p = subprocess.run([base.LLMRING, "chat", "--base-url", srv.base, "--cache",
                                t.path("c.db"), "hi %d" % i], capture_output=True, text=True,
                               env=base.clean_env(), timeout=60, preexec_fn=small_files)
            assert p.returncode == 0, p.stderr
            assert "Sanitizer" not in p.stderr and "runtime error:" not in p.stderr, p.stderr
            assert p.stdout.strip(), p.stdout
            assert p.stderr.count("llmring: cache") == 1, p.stderr
        assert len(srv.requests) == 2


@test
def two_batches_share_one_cache_at_once():
    """Two processes fill one file at once (overlapping inputs), then a
    third answers every line from it. `llmring mock` counts what it
    served (its exit line); PyServer is too slow for 375 requests."""
    with Tmp() as t, MockProcess() as m:
        write_lines(t.path("a.jsonl"), lines(150))
        write_lines(t.path("b.jsonl"), lines(225)[75:])
        procs = [subprocess.Popen([base.LLMRING, "batch", t.path(n + ".jsonl"), "-o",
                                   t.path(n + ".out"), "--base-url", m.base, "--cache",
                                   t.path("c.db"), "--stats", t.path(n + ".out.stats")],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, env=base.clean_env()) for n in ("a", "b")]
        sent = 0
        for p in procs:
            _, err = p.communicate(timeout=120)
            assert p.returncode == 0, err
            assert "llmring: cache" not in err, err  # no problem reported
            assert "Sanitizer" not in err and "runtime error:" not in err, err
        for n in ("a", "b"):
            s = stats(t, n + ".out")
            sent += s["requests"] - s["cache_hits"]
        assert 225 <= sent <= 300, sent
        write_lines(t.path("all.jsonl"), lines(225))
        p = run(["batch", t.path("all.jsonl"), "-o", t.path("all.out"), "--base-url", m.base,
                 "--cache", t.path("c.db"), "--cache-mode", "read", "--stats",
                 t.path("all.out.stats")])
        assert p.returncode == 0, p.stderr
        assert stats(t, "all.out")["cache_hits"] == 225
        m.proc.send_signal(signal.SIGTERM)
        m.proc.wait(timeout=10)
        served = int(m.proc.stderr.read().split("served ")[1].split()[0])
        assert served == sent, (served, sent)


def main():
    return base.run_tests(TESTS, "test_cli_cache.py")


if __name__ == "__main__":
    sys.exit(main())
