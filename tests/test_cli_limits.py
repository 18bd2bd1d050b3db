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


class EndlessBodyServer:
    """Answers every request with 200 and a chunked body that never ends."""

    def __enter__(self):
        import asyncio, threading
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        chunk = b"%x\r\n%s\r\n" % (65536, b"x" * 65536)

        async def serve(reader, writer):
            try:
                while True:
                    line = await reader.readline()
                    if line in (b"\r\n", b""):
                        break
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Transfer-Encoding: chunked\r\n\r\n")
                while True:
                    writer.write(chunk)
                    await writer.drain()
            except Exception:
                pass
            finally:
                writer.close()

        async def start():
            self.server = await asyncio.start_server(serve, "127.0.0.1", 0, backlog=1024)
            self.port = self.server.sockets[0].getsockname()[1]
            ready.set()

        def run():
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(start())
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        ready.wait(10)
        self.url = "http://127.0.0.1:%d/v1" % self.port
        return self

    def __exit__(self, *a):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def peak_rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


@test
def endless_bodies_stay_within_the_buffered_bytes_cap():
    cap = 64 << 20
    with tempfile.TemporaryDirectory() as d, EndlessBodyServer() as srv:
        inp, out = os.path.join(d, "in.jsonl"), os.path.join(d, "out.jsonl")
        write_lines(inp, 1000)
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
        env["LLMRING_MAX_BUFFERED_BYTES"] = str(cap)
        p = subprocess.Popen([LLMRING, "batch", inp, "-o", out, "--base-url", srv.url,
                              "--concurrency", "500", "--max-retries", "0", "--quiet"],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        import time
        peak, deadline = 0, time.time() + 240
        while p.poll() is None and time.time() < deadline:
            try:
                peak = max(peak, peak_rss_kib(p.pid))
            except OSError:
                break
            time.sleep(0.05)
        if p.poll() is None:
            p.kill()
            raise AssertionError("batch still running after 240 s")
        err = p.stderr.read()
        assert p.returncode == 1, "status %d: %s" % (p.returncode, err[-2000:])
        ids = outcomes(out)
        assert len(ids) == 1000
        codes = {r["error"]["code"] for r in ids.values() if r["error"]}
        assert codes == {"response_too_large"}, codes
        # The cap plus the process's own footprint and allocator slack;
        # ASan's quarantine keeps freed memory resident, so only codes
        # and counts are checked under it.
        with open(LLMRING, "rb") as f:
            sanitized = b"__asan_init" in f.read()
        if sanitized:
            return
        assert peak < (cap >> 10) * 3 + 64 * 1024, "peak RSS %d KiB over cap %d KiB" % (peak, cap >> 10)
        print("     peak RSS %.1f MiB with a %d MiB cap at concurrency 500" % (peak / 1024, cap >> 20))


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
