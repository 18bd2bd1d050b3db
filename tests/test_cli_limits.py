#!/usr/bin/env python3
"""The batch under resource limits (issue 9): the engine treats running out
of file descriptors as back-pressure, and a batch against more connections
than provided buffers neither stalls nor loses a line.

usage: test_cli_limits.py PATH/TO/llmring
Servers: `llmring mock` as its own process on 127.0.0.1 (so only the
batch's own descriptors count against its limit).
"""
import json
import os
import resource
import subprocess
import sys
import tempfile
import traceback

LLMRING = None
TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


def write_lines(path, n, model="gpt-4o-mini"):
    with open(path, "w") as f:
        for i in range(n):
            f.write(json.dumps({"custom_id": "r%d" % i, "method": "POST",
                                "url": "/v1/chat/completions",
                                "body": {"model": model, "max_tokens": 8,
                                         "messages": [{"role": "user", "content": "hi %d" % i}]}})
                    + "\n")


class Mock:
    def __enter__(self):
        self.p = subprocess.Popen([LLMRING, "mock", "--listen", "127.0.0.1:0"],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.p.stdout.readline()
        self.url = line.split("listening on ")[1].strip() + "/v1"
        return self

    def __exit__(self, *a):
        self.p.kill()
        self.p.wait()


def limited(nofile):
    def pre():
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
    return pre


def outcomes(path):
    ids = {}
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            assert r["custom_id"] not in ids, "duplicate outcome " + r["custom_id"]
            ids[r["custom_id"]] = r
    return ids


def batch(args, nofile, timeout=120):
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    return subprocess.run([LLMRING, "batch"] + args, capture_output=True, text=True,
                          env=env, timeout=timeout, preexec_fn=limited(nofile))


@test
def fd_limit_far_below_concurrency_slows_down_instead_of_failing():
    with tempfile.TemporaryDirectory() as d, Mock() as m:
        inp, out = os.path.join(d, "in.jsonl"), os.path.join(d, "out.jsonl")
        write_lines(inp, 2000)
        p = batch([inp, "-o", out, "--base-url", m.url, "--concurrency", "500",
                   "--max-retries", "0", "--quiet"], nofile=64)
        assert p.returncode == 0, "status %d: %s" % (p.returncode, p.stderr[-2000:])
        ids = outcomes(out)
        assert len(ids) == 2000
        bad = [r for r in ids.values() if r["error"] is not None]
        assert not bad, "failed lines, first: %s" % bad[0]


@test
def more_connections_than_receive_buffers_completes_every_line():
    with tempfile.TemporaryDirectory() as d, Mock() as m:
        inp, out = os.path.join(d, "in.jsonl"), os.path.join(d, "out.jsonl")
        write_lines(inp, 20000)
        p = batch([inp, "-o", out, "--base-url", m.url, "--concurrency", "4000", "--quiet"],
                  nofile=8192, timeout=180)
        assert p.returncode == 0, "status %d: %s" % (p.returncode, p.stderr[-2000:])
        ids = outcomes(out)
        assert len(ids) == 20000


def main():
    global LLMRING
    LLMRING = os.path.abspath(sys.argv[1])
    failed = []
    for t in TESTS:
        try:
            t()
            print("ok   " + t.__name__)
        except Exception:
            failed.append(t.__name__)
            print("FAIL " + t.__name__)
            traceback.print_exc()
    print("%d tests, %d passed, %d failed" % (len(TESTS), len(TESTS) - len(failed), len(failed)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
