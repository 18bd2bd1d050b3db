#!/usr/bin/env python3
"""End-to-end tests of the llmring command line (batch, chat, help; bench has
test_cli_bench.py).

usage: test_cli_batch.py PATH/TO/llmring

Long (over 800 lines) on purpose: one list of short independent end-to-end
cases sharing the servers and helpers below.

Servers used: the built-in mock (`--mock`, in-process), `llmring mock` as its
own process (plain HTTP, or HTTPS with certificates from tests/certs/gen-certs.sh
made in a temporary directory), and a small Python HTTP server here whose
behaviour each request picks (to see exactly what the client sent, and to send
what the mock never does: pretty-printed bodies, non-JSON error bodies, 401/404).
The HTTPS tests are skipped, with a note, when `openssl` is not installed.
Exits 0 when every test passed (or was skipped), 1 otherwise.
"""
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

LLMRING = None
SECRET = "sk-test-SECRET-never-printed-8d1f2c"
TESTS = []
GEN_CERTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "certs", "gen-certs.sh")
INSECURE_WARNING = "warning: --insecure: TLS certificates are not verified"


class Skip(Exception):
    """Raised by a test that cannot run here; the message says why."""


def test(fn):
    TESTS.append(fn)
    return fn


# ---- helpers ---------------------------------------------------------------

def clean_env(**extra):
    """The environment without provider settings or a CA bundle override."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OPENAI_", "ANTHROPIC_", "GEMINI_", "OLLAMA_", "LLMRING_MOCK"))
           and k not in ("SSL_CERT_FILE", "SSL_CERT_DIR")}
    env.update(extra)
    return env


def run(args, env=None, timeout=60, cwd=None):
    """Runs llmring; no run may ever print the secret key."""
    p = subprocess.run([LLMRING] + args, capture_output=True, text=True,
                       env=env if env is not None else clean_env(),
                       timeout=timeout, cwd=cwd)
    assert SECRET not in p.stdout and SECRET not in p.stderr, "the API key was printed"
    # Under a sanitizer build, any report fails the test whatever the status.
    assert "Sanitizer" not in p.stderr and "runtime error:" not in p.stderr, p.stderr
    return p


def chat_line(cid, content="Hello there", model="gpt-4o-mini", url="/v1/chat/completions"):
    return json.dumps({"custom_id": cid, "method": "POST", "url": url,
                       "body": {"model": model,
                                "messages": [{"role": "user", "content": content}]}})


def embed_line(cid, text="hello world", model="text-embedding-3-small"):
    return json.dumps({"custom_id": cid, "method": "POST", "url": "/v1/embeddings",
                       "body": {"model": model, "input": text}})


def write_lines(path, lines, final_newline=True):
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + ("\n" if final_newline and lines else ""))


def read_output(path):
    """Every line of an output file, parsed; the file must end in a newline."""
    with open(path, "rb") as f:
        data = f.read()
    assert data == b"" or data.endswith(b"\n"), "output does not end with a newline"
    out = []
    for raw in data.decode("utf-8").split("\n")[:-1]:
        obj = json.loads(raw)
        assert isinstance(obj, dict)
        out.append(obj)
    return out


def by_id(lines):
    return {l["custom_id"]: l for l in lines if "input_line" not in l}


def check_shape(line):
    keys = list(line.keys())
    assert keys[:4] == ["id", "custom_id", "response", "error"], keys
    assert line["id"].startswith("batch_req_"), line["id"]
    if line["error"] is None:
        r = line["response"]
        assert r["status_code"] == 200, r
        assert isinstance(r["body"], dict)
        assert "request_id" in r
    else:
        assert set(line["error"].keys()) == {"code", "message"}, line["error"]
        assert isinstance(line["error"]["message"], str) and line["error"]["message"]


def check_secret_absent(*paths):
    for p in paths:
        if os.path.exists(p):
            with open(p, "rb") as f:
                assert SECRET.encode() not in f.read(), "the API key was written to " + p


class Tmp:
    def __init__(self):
        self.dir = tempfile.TemporaryDirectory(prefix="llmring-cli-")

    def path(self, name):
        return os.path.join(self.dir.name, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.dir.cleanup()


class MockProcess:
    """`llmring mock --listen 127.0.0.1:0` as a separate process."""

    def __init__(self, *args):
        self.proc = subprocess.Popen([LLMRING, "mock", "--listen", "127.0.0.1:0"] + list(args),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        first = self.proc.stdout.readline().strip()
        if not (first.startswith("listening on http://") or
                first.startswith("listening on https://")):
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("mock said: %r %r" % (first, self.proc.stderr.read()))
        self.url = first[len("listening on "):]
        self.base = self.url + "/v1"
        self.port = int(self.url.rsplit(":", 1)[1])

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()
        self.proc.stderr.close()


class PyServer:
    """A scripted OpenAI-like server; a marker in the request body picks
    the reply (srv:pretty, srv:401, srv:404text, srv:429)."""

    def __init__(self):
        self.requests = []
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                with outer.lock:
                    outer.requests.append({"path": self.path, "headers": dict(self.headers),
                                           "body": body})
                    count = len(outer.requests)
                text = body.decode("utf-8", "replace")
                try:
                    model = json.loads(body).get("model")
                except ValueError:
                    model = None
                status, ctype = 200, "application/json"
                if "srv:401" in text:
                    status = 401
                    payload = json.dumps({"error": {"message": "Incorrect API key provided",
                                                    "type": "invalid_request_error",
                                                    "code": "invalid_api_key"}})
                elif "srv:429" in text:
                    status = 429
                    payload = json.dumps({"error": {"message": "Rate limit reached",
                                                    "type": "requests", "code": None}})
                elif "srv:404text" in text:
                    status, ctype = 404, "text/plain"
                    payload = "no such route\nat all"
                else:
                    doc = {"id": "chatcmpl-py-%d" % count, "object": "chat.completion",
                           "model": model,
                           "choices": [{"index": 0, "message": {"role": "assistant",
                                                                "content": "line one\nline \"two\" \u00e9"},
                                        "finish_reason": "stop"}],
                           "usage": {"prompt_tokens": 5, "completion_tokens": 7,
                                     "total_tokens": 12}}
                    if self.path.endswith("/embeddings"):
                        doc = {"object": "list", "model": model,
                               "data": [{"object": "embedding", "index": 0,
                                         "embedding": [0.5, -0.25]}],
                               "usage": {"prompt_tokens": 3, "total_tokens": 3}}
                    payload = json.dumps(doc, indent=2 if "srv:pretty" in text else None)
                data = payload.encode()
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("x-request-id", "req_py_%d" % count)
                self.end_headers()
                self.wfile.write(data)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.base = "http://127.0.0.1:%d/v1" % self.port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


class Certs:
    """Test certificates (tests/certs/gen-certs.sh) in a temporary directory."""

    def __init__(self):
        if shutil.which("openssl") is None:
            raise Skip("openssl is not installed (needed to make test certificates)")
        self.dir = tempfile.TemporaryDirectory(prefix="llmring-certs-")
        p = subprocess.run(["bash", GEN_CERTS, self.dir.name], capture_output=True, text=True,
                           timeout=60)
        if p.returncode != 0:
            self.dir.cleanup()
            raise AssertionError("gen-certs.sh failed: " + p.stderr)

    def path(self, name):
        return os.path.join(self.dir.name, name)

    def mock(self, name="server"):
        """`llmring mock` serving HTTPS with NAME.crt / NAME.key."""
        return MockProcess("--tls-cert", self.path(name + ".crt"),
                           "--tls-key", self.path(name + ".key"))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.dir.cleanup()


def https_base(mock, host="localhost"):
    return "https://%s:%d/v1" % (host, mock.port)


def check_all_failed(path, ids, code):
    """Every line of the output is a transport error with this code."""
    out = read_output(path)
    assert sorted(l["custom_id"] for l in out) == sorted(ids), out
    for l in out:
        check_shape(l)
        assert l["response"] is None, l
        assert l["error"]["code"] == code, l
    return out


def check_all_succeeded(path, ids):
    out = read_output(path)
    assert sorted(l["custom_id"] for l in out) == sorted(ids), out
    for l in out:
        check_shape(l)
        assert l["error"] is None, l
    return out


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ---- top level ----------------------------------------------------------------

@test
def version_prints_version():
    p = run(["--version"])
    assert p.returncode == 0
    assert p.stdout.startswith("llmring ") and p.stdout.strip().split()[1][0].isdigit(), p.stdout


@test
def help_lists_commands_and_each_command_has_help():
    p = run(["help"])
    assert p.returncode == 0
    for cmd in ("batch", "chat", "mock", "bench"):
        assert cmd in p.stdout
        q = run(["help", cmd])
        assert q.returncode == 0 and "usage: llmring " + cmd in q.stdout, (cmd, q.stdout)
    assert "--max-retries" in run(["help", "batch"]).stdout
    assert run(["batch", "--help"]).returncode == 0


@test
def unknown_command_or_help_topic_is_usage_error():
    p = run(["frobnicate"])
    assert p.returncode == 2 and "usage" in p.stderr
    assert run([]).returncode == 2
    assert run(["help", "frobnicate"]).returncode == 2


# ---- batch with the built-in mock ------------------------------------------------

@test
def mock_batch_chat_and_embeddings_succeed():
    with Tmp() as t:
        write_lines(t.path("in.jsonl"), [chat_line("c1"), embed_line("e1"),
                                         chat_line("c2", url="/chat/completions")])
        p = run(["batch", t.path("in.jsonl"), "-o", t.path("out.jsonl"), "--mock",
                 "--stats", t.path("stats.json")])
        assert p.returncode == 0, p.stderr
        lines = read_output(t.path("out.jsonl"))
        assert len(lines) == 3
        for l in lines:
            check_shape(l)
            assert l["error"] is None
        ids = by_id(lines)
        assert set(ids) == {"c1", "c2", "e1"}
        assert ids["c1"]["response"]["body"]["object"] == "chat.completion"
        assert ids["e1"]["response"]["body"]["object"] == "list"
        assert len({l["id"] for l in lines}) == 3
        stats = json.load(open(t.path("stats.json")))
        for key in ("requests", "skipped", "succeeded", "failed", "retries", "input_tokens",
                    "output_tokens", "cost_usd", "unpriced_models", "wall_s", "requests_per_s"):
            assert key in stats, key
        assert stats["requests"] == 3 and stats["succeeded"] == 3 and stats["failed"] == 0
        assert stats["skipped"] == 0 and stats["retries"] == 0
        assert stats["input_tokens"] > 0 and stats["output_tokens"] > 0
        # Both models are in the compiled-in price table.
        assert isinstance(stats["cost_usd"], float) and stats["cost_usd"] > 0, stats
        assert stats["unpriced_models"] == [], stats
        assert "succeeded" in p.stderr  # the text summary
        assert "\r" not in p.stderr and "\033" not in p.stderr  # no progress bar off a terminal


@test
def custom_ids_of_every_length_come_back_exactly_once():
    # Line records are reused once reaped (room for 47-byte ids, longer
    # ones get their own): past many windows, every id comes back exactly
    # once, whatever the lengths around it.
    with Tmp() as t:
        lines, want = [], []
        for i in range(1500):
            cid = "r%d" % i if i % 3 else "long-%s-%d" % ("x" * (30 + i % 90), i)
            lines.append(chat_line(cid, content="line %d" % i))
            want.append(cid)
        write_lines(t.path("in.jsonl"), lines)
        p = run(["batch", t.path("in.jsonl"), "-o", t.path("out.jsonl"), "--mock",
                 "--concurrency", "8", "--quiet"])
        assert p.returncode == 0, p.stderr
        check_all_succeeded(t.path("out.jsonl"), want)


@test
def blank_lines_are_skipped_silently():
    with Tmp() as t:
        write_lines(t.path("in.jsonl"), ["", chat_line("a"), "   ", "\t", chat_line("b"), ""])
        p = run(["batch", t.path("in.jsonl"), "-o", t.path("out.jsonl"), "--mock", "--quiet"])
        assert p.returncode == 0, p.stderr
        assert sorted(l["custom_id"] for l in read_output(t.path("out.jsonl"))) == ["a", "b"]


@test
def unusable_lines_get_invalid_input_with_line_number():
    bad = [
        "this is not json",
        "[1,2,3]",
        json.dumps({"method": "POST", "url": "/v1/chat/completions", "body": {"model": "m"}}),
        json.dumps({"custom_id": "", "url": "/v1/chat/completions", "body": {"model": "m"}}),
        json.dumps({"custom_id": 7, "url": "/v1/chat/completions", "body": {"model": "m"}}),
        json.dumps({"custom_id": "x", "method": "GET", "url": "/v1/chat/completions",
                    "body": {"model": "m"}}),
        json.dumps({"custom_id": "x", "body": {"model": "m"}}),
        json.dumps({"custom_id": "x", "url": "/v1/completions", "body": {"model": "m"}}),
        json.dumps({"custom_id": "x", "url": "/v1/chat/completions", "body": "text"}),
        json.dumps({"custom_id": "x", "url": "/v1/chat/completions"}),
        json.dumps({"custom_id": "x", "url": "/v1/chat/completions", "body": {"messages": []}}),
        '{"custom_id":"x","url":"/v1/chat/completions","body":{"model":"m"}',
    ]
    with Tmp() as t:
        lines = [chat_line("good")] + bad
        write_lines(t.path("in.jsonl"), lines)
        p = run(["batch", t.path("in.jsonl"), "-o", t.path("out.jsonl"), "--mock",
                 "--stats", t.path("s.json")])
        assert p.returncode == 1, (p.returncode, p.stderr)
        out = read_output(t.path("out.jsonl"))
        assert len(out) == len(lines)
        errors = sorted((l for l in out if "input_line" in l), key=lambda l: l["input_line"])
        assert [e["input_line"] for e in errors] == list(range(2, len(lines) + 1))
        for e in errors:
            check_shape(e)
            assert e["custom_id"] is None and e["response"] is None
            assert e["error"]["code"] == "invalid_input"
        msgs = [e["error"]["message"] for e in errors]
        assert "not valid JSON" in msgs[0]
        assert "custom_id" in msgs[2] and "custom_id" in msgs[3] and "custom_id" in msgs[4]
        assert "method" in msgs[5] and "url" in msgs[6] and "url" in msgs[7]
        assert "body" in msgs[8] and "body" in msgs[9] and "model" in msgs[10]
        assert by_id(out)["good"]["error"] is None
        stats = json.load(open(t.path("s.json")))
        assert stats["requests"] == 1 and stats["succeeded"] == 1


@test
def duplicate_custom_id_first_wins():
    with Tmp() as t:
        write_lines(t.path("in.jsonl"), [chat_line("a"), chat_line("b"), chat_line("a", "again"),
                                         chat_line("a", "third")])
        p = run(["batch", t.path("in.jsonl"), "-o", t.path("out.jsonl"), "--mock", "--quiet"])
        assert p.returncode == 1
        out = read_output(t.path("out.jsonl"))
        assert len(out) == 4
        dups = sorted((l for l in out if "input_line" in l), key=lambda l: l["input_line"])
        assert [(d["custom_id"], d["input_line"]) for d in dups] == [("a", 3), ("a", 4)]
        for d in dups:
            assert d["error"]["code"] == "duplicate_custom_id" and d["response"] is None
        ok = [l for l in out if "input_line" not in l]
        assert sorted(l["custom_id"] for l in ok) == ["a", "b"]
        assert all(l["error"] is None for l in ok)


@test
def custom_ids_with_escapes_round_trip():
    ids = ["quote\"d", "back\\slash", "caf\u00e9", "emoji \U0001F600", "tab\there", "uni\u2028"]
    with Tmp() as t:
        write_lines(t.path("in.jsonl"), [chat_line(i) for i in ids])
        assert run(["batch", t.path("in.jsonl"), "-o", t.path("out.jsonl"), "--mock",
                    "--quiet"]).returncode == 0
        assert set(by_id(read_output(t.path("out.jsonl")))) == set(ids)
        # Written differently (\u escapes) the same ids are recognised on resume.
        write_lines(t.path("in.jsonl"), [chat_line(i).replace("caf\\u00e9", "caf\u00e9")
                                         for i in ids])
        p = run(["batch", t.path("in.jsonl"), "-o", t.path("out.jsonl"), "--mock",
                 "--stats", t.path("s.json")])
        assert p.returncode == 0
        assert json.load(open(t.path("s.json")))["skipped"] == len(ids)
        assert len(read_output(t.path("out.jsonl"))) == len(ids)


@test
def mock_faults_give_error_lines():
    faults = {"f500": ("500", "server_error", 500), "f503": ("503", "overloaded", 503),
              "f429": ("429", "rate_limited", 429), "freset": ("reset", "connection_reset", None),
              "fmal": ("malformed", "protocol_error", 200)}
    with Tmp() as t:
        lines = [chat_line("ok")] + [chat_line(k, "please mock-fault:%s now" % v[0])
                                     for k, v in faults.items()]
        write_lines(t.path("in.jsonl"), lines)
        p = run(["batch", t.path("in.jsonl"), "-o", t.path("out.jsonl"), "--mock",
                 "--stats", t.path("s.json"), "--quiet"])
        assert p.returncode == 1
        out = by_id(read_output(t.path("out.jsonl")))
        assert out["ok"]["error"] is None
        for cid, (_, code, status) in faults.items():
            l = out[cid]
            check_shape(l)
            assert l["error"]["code"] == code, (cid, l)
            if status is None:
                assert l["response"] is None, l
            else:
                assert l["response"]["status_code"] == status, l
        assert isinstance(out["f500"]["response"]["body"], dict)
        assert "error" in out["f500"]["response"]["body"]
        assert isinstance(out["fmal"]["response"]["body"], str)  # not JSON: kept as a string
        stats = json.load(open(t.path("s.json")))
        assert stats["failed"] == len(faults) and stats["succeeded"] == 1


@test
def model_override_reaches_the_server():
    with Tmp() as t:
        write_lines(t.path("in.jsonl"), [chat_line("a", model="orig-model")])
        assert run(["batch", t.path("in.jsonl"), "-o", t.path("out.jsonl"), "--mock",
                    "--model", "override-model", "--quiet"]).returncode == 0
        body = by_id(read_output(t.path("out.jsonl")))["a"]["response"]["body"]
        assert body["model"] == "override-model", body["model"]


@test
def quiet_prints_nothing_on_success():
    with Tmp() as t:
        write_lines(t.path("in.jsonl"), [chat_line("a")])
        p = run(["batch", t.path("in.jsonl"), "-o", t.path("out.jsonl"), "--mock", "--quiet"])
        assert p.returncode == 0 and p.stderr == "" and p.stdout == ""


@test
def many_lines_each_answered_once():
    n = 3000
    with Tmp() as t:
        write_lines(t.path("in.jsonl"), [chat_line("r%d" % i, "x %d" % i) for i in range(n)])
        p = run(["batch", t.path("in.jsonl"), "-o", t.path("out.jsonl"), "--mock",
                 "--concurrency", "8", "--stats", t.path("s.json"), "--quiet"])
        assert p.returncode == 0, p.stderr
        out = read_output(t.path("out.jsonl"))
        assert len(out) == n and len(by_id(out)) == n
        assert json.load(open(t.path("s.json")))["requests"] == n


@test
def flags_accept_equals_form():
    with Tmp() as t:
        write_lines(t.path("in.jsonl"), [chat_line("a"), chat_line("b")])
        p = run(["batch", t.path("in.jsonl"), "-o=" + t.path("out.jsonl"), "--mock",
                 "--concurrency=2", "--timeout=30.5", "--connect-timeout=2.5",
                 "--idle-timeout=9", "--max-retries=0", "--stats=" + t.path("s.json"),
                 "--model=eq-model", "--quiet"])
        assert p.returncode == 0, p.stderr
        assert len(read_output(t.path("out.jsonl"))) == 2
        assert json.load(open(t.path("s.json")))["succeeded"] == 2


# ---- resume ----------------------------------------------------------------------

@test
def resume_skips_lines_already_done():
    with Tmp() as t:
        all_lines = [chat_line("r%d" % i) for i in range(10)]
        write_lines(t.path("in.jsonl"), all_lines[:4])
        assert run(["batch", t.path("in.jsonl"), "-o", t.path("out.jsonl"), "--mock",
                    "--quiet"]).returncode == 0
        write_lines(t.path("in.jsonl"), all_lines)
        p = run(["batch", t.path("in.jsonl"), "-o", t.path("out.jsonl"), "--mock",
                 "--stats", t.path("s.json")])
        assert p.returncode == 0, p.stderr
        stats = json.load(open(t.path("s.json")))
        assert stats["skipped"] == 4 and stats["requests"] == 6, stats
        out = read_output(t.path("out.jsonl"))
        assert len(out) == 10 and len(by_id(out)) == 10
        # A third run does nothing.
        p = run(["batch", t.path("in.jsonl"), "-o", t.path("out.jsonl"), "--mock",
                 "--stats", t.path("s.json")])
        assert p.returncode == 0
        assert json.load(open(t.path("s.json")))["requests"] == 0
        assert len(read_output(t.path("out.jsonl"))) == 10


@test
def resume_cuts_a_partial_last_line():
    with Tmp() as t:
        write_lines(t.path("in.jsonl"), [chat_line("a"), chat_line("b"), chat_line("c")])
        write_lines(t.path("first.jsonl"), [chat_line("a")])
        assert run(["batch", t.path("first.jsonl"), "-o", t.path("out.jsonl"), "--mock",
                    "--quiet"]).returncode == 0
        with open(t.path("out.jsonl"), "a") as f:  # as if killed in the middle of a write
            f.write('{"id":"batch_req_torn","custom_id":"b","response":{"status_')
        p = run(["batch", t.path("in.jsonl"), "-o", t.path("out.jsonl"), "--mock",
                 "--stats", t.path("s.json")])
        assert p.returncode == 0, p.stderr
        assert "partial" in p.stderr
        out = read_output(t.path("out.jsonl"))  # every line parses: the torn one is gone
        assert sorted(l["custom_id"] for l in out) == ["a", "b", "c"]
        assert json.load(open(t.path("s.json")))["skipped"] == 1


@test
def resume_matches_unusable_lines_by_line_number():
    with Tmp() as t:
        write_lines(t.path("in.jsonl"), [chat_line("a"), "garbage", chat_line("a"),
                                         chat_line("b")])
        assert run(["batch", t.path("in.jsonl"), "-o", t.path("out.jsonl"), "--mock",
                    "--quiet"]).returncode == 1
        before = read_output(t.path("out.jsonl"))
        assert len(before) == 4
        p = run(["batch", t.path("in.jsonl"), "-o", t.path("out.jsonl"), "--mock",
                 "--stats", t.path("s.json"), "--quiet"])
        # Nothing new, but the output holds errors: still exit 1.
        assert p.returncode == 1
        assert len(read_output(t.path("out.jsonl"))) == 4
        stats = json.load(open(t.path("s.json")))
        assert stats["requests"] == 0 and stats["skipped"] == 4, stats


@test
def id_hash_collisions_change_no_duplicate_or_resume_outcome():
    """The custom_id set keeps only hashes in memory: forced to 4 hash
    values (LLMRING_TEST_ID_HASH_BITS, so every id collides with a quarter
    of the others), the duplicates, the skips and the exit status of a run
    and its resume are those of a run with full hashes."""
    n = 400
    ids = ["r%d" % i for i in range(n)] + ["caf\u00e9", "caf\u00e9 ", " ", "  "]
    lines = [chat_line(i) for i in ids]
    for k in range(0, n, 10):  # duplicates, some of ids not read yet at the cut
        lines.insert(3 * k // 2 + 7, chat_line("r%d" % (k + 5), "again"))
    cut = len(lines) // 2

    def outcome(l):
        return (l["custom_id"], l.get("input_line"), (l["error"] or {}).get("code"))

    def job(env):
        with Tmp() as t:
            write_lines(t.path("in.jsonl"), lines[:cut])
            p1 = run(["batch", t.path("in.jsonl"), "-o", t.path("out.jsonl"), "--mock",
                      "--quiet"], env=env)
            with open(t.path("out.jsonl"), "a") as f:  # an earlier error of an id read late
                f.write(json.dumps({"id": "batch_req_x", "custom_id": "r399", "response": None,
                                    "error": {"code": "server_error", "message": "x"}}) + "\n")
            write_lines(t.path("in.jsonl"), lines)
            p2 = run(["batch", t.path("in.jsonl"), "-o", t.path("out.jsonl"), "--mock",
                      "--stats", t.path("s.json"), "--quiet"], env=env)
            s = json.load(open(t.path("s.json")))
            return (p1.returncode, p2.returncode, s["requests"], s["skipped"],
                    sorted(map(outcome, read_output(t.path("out.jsonl"))), key=str))

    full = job(clean_env())
    forced = job(clean_env(LLMRING_TEST_ID_HASH_BITS="2"))
    assert forced == full, (forced[:4], full[:4])
    outs = full[4]
    dups = [o for o in outs if o[2] == "duplicate_custom_id"]
    assert len(dups) == n // 10, dups
    assert sorted(o[0] for o in outs if o[1] is None) == sorted(ids), "one outcome per id"
    assert full[:2] == (1, 1) and full[2] > 0 and full[3] > cut // 2, full[:4]


@test
def resume_after_duplicate_written_but_original_lost():
    """A crash can leave the duplicate's error line without the first
    line's outcome: the first line must still be sent on resume."""
    with Tmp() as t:
        write_lines(t.path("in.jsonl"), [chat_line("a"), chat_line("a", "dup")])
        with open(t.path("out.jsonl"), "w") as f:
            f.write(json.dumps({"id": "batch_req_1", "custom_id": "a", "response": None,
                                "error": {"code": "duplicate_custom_id", "message": "dup"},
                                "input_line": 2}) + "\n")
        p = run(["batch", t.path("in.jsonl"), "-o", t.path("out.jsonl"), "--mock",
                 "--stats", t.path("s.json"), "--quiet"])
        assert p.returncode == 1  # the duplicate line is an error line
        out = read_output(t.path("out.jsonl"))
        assert len(out) == 2
        assert by_id(out)["a"]["error"] is None
        assert json.load(open(t.path("s.json")))["requests"] == 1


@test
def resume_after_kill_9_loses_nothing_and_duplicates_nothing():
    n = 1500
    with Tmp() as t, MockProcess("--ttft-ms", "5") as mock:
        write_lines(t.path("in.jsonl"), [chat_line("k%d" % i) for i in range(n)])
        args = ["batch", t.path("in.jsonl"), "-o", t.path("out.jsonl"), "--base-url",
                mock.base, "--concurrency", "8", "--quiet"]
        proc = subprocess.Popen([LLMRING] + args, env=clean_env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        deadline = time.time() + 30
        while time.time() < deadline:
            if os.path.exists(t.path("out.jsonl")) and os.path.getsize(t.path("out.jsonl")) > 20000:
                break
            time.sleep(0.01)
        proc.kill()
        proc.wait()
        partial = read_output(t.path("out.jsonl"))
        assert 0 < len(partial) < n, len(partial)
        p = run(args + ["--stats", t.path("s.json")])
        assert p.returncode == 0, p.stderr
        out = read_output(t.path("out.jsonl"))
        assert len(out) == n and len(by_id(out)) == n
        stats = json.load(open(t.path("s.json")))
        assert stats["skipped"] == len(partial) and stats["requests"] == n - len(partial)


# ---- --retry-errors ------------------------------------------------------------------

def fault_input(t, faults):
    """in.jsonl with good lines g0..g3 and one line per fault KIND (f-KIND)
    whose body carries the mock's marker; returns the ids."""
    lines = [chat_line("g%d" % i, "fine %d" % i) for i in range(4)]
    lines += [chat_line("f-" + k, "please mock-fault:%s now" % k) for k in faults]
    write_lines(t.path("in.jsonl"), lines)
    return ["g%d" % i for i in range(4)] + ["f-" + k for k in faults]


def heal_input(t):
    """Edits in.jsonl so that every line succeeds (the markers removed)."""
    with open(t.path("in.jsonl")) as f:
        text = f.read()
    write_lines(t.path("in.jsonl"), text.replace("mock-fault:", "no fault ").splitlines())


@test
def retry_errors_reruns_only_the_error_lines():
    faults = ["500", "503", "reset", "malformed"]
    with Tmp() as t:
        ids = fault_input(t, faults)
        args = ["batch", t.path("in.jsonl"), "-o", t.path("out.jsonl"), "--mock", "--quiet",
                "--max-retries", "0", "--stats", t.path("s.json")]
        assert run(args).returncode == 1
        first = by_id(read_output(t.path("out.jsonl")))
        assert sorted(k for k, l in first.items() if l["error"]) == sorted("f-" + k for k in faults)
        heal_input(t)
        p = run(args + ["--retry-errors"])
        assert p.returncode == 0, p.stderr
        out = read_output(t.path("out.jsonl"))
        assert len(out) == len(ids), out  # exactly one line per input line
        assert sorted(l["custom_id"] for l in out) == sorted(ids)
        for l in out:
            check_shape(l)
            assert l["error"] is None, l
        # The success lines of the first run stay as they were.
        again = by_id(out)
        for i in range(4):
            assert again["g%d" % i] == first["g%d" % i]
        stats = json.load(open(t.path("s.json")))
        assert stats["requests"] == len(faults) and stats["skipped"] == 4, stats
        assert stats["succeeded"] == len(faults) and stats["failed"] == 0, stats
        # Atomic rewrite: nothing left beside the output.
        assert sorted(os.listdir(t.dir.name)) == ["in.jsonl", "out.jsonl", "s.json"]


@test
def rerun_without_retry_errors_skips_the_error_lines():
    with Tmp() as t:
        ids = fault_input(t, ["500", "429"])
        args = ["batch", t.path("in.jsonl"), "-o", t.path("out.jsonl"), "--mock", "--quiet",
                "--max-retries", "0", "--stats", t.path("s.json")]
        assert run(args).returncode == 1
        with open(t.path("out.jsonl"), "rb") as f:
            before = f.read()
        heal_input(t)
        p = run(args)
        assert p.returncode == 1, p.stderr  # the output still holds error lines
        stats = json.load(open(t.path("s.json")))
        assert stats["requests"] == 0 and stats["skipped"] == len(ids), stats
        with open(t.path("out.jsonl"), "rb") as f:
            assert f.read() == before


@test
def retry_errors_rewrites_by_rename_keeping_the_mode():
    with Tmp() as t:
        fault_input(t, ["503"])
        args = ["batch", t.path("in.jsonl"), "-o", t.path("out.jsonl"), "--mock", "--quiet",
                "--max-retries", "0"]
        assert run(args).returncode == 1
        os.chmod(t.path("out.jsonl"), 0o600)
        inode = os.stat(t.path("out.jsonl")).st_ino
        p = run(args + ["--retry-errors"])  # the fault is still there: fails again
        assert p.returncode == 1, p.stderr
        st = os.stat(t.path("out.jsonl"))
        assert st.st_ino != inode, "the error lines were not removed by a rename"
        assert st.st_mode & 0o777 == 0o600, oct(st.st_mode)
        out = read_output(t.path("out.jsonl"))
        assert len(out) == 5  # still one line per input: the old error line is gone
        assert [l["custom_id"] for l in out if l["error"]] == ["f-503"]
        assert sorted(os.listdir(t.dir.name)) == ["in.jsonl", "out.jsonl"]
        # Nothing to remove: the file is appended to in place.
        heal_input(t)
        assert run(args + ["--retry-errors"]).returncode == 0
        inode = os.stat(t.path("out.jsonl")).st_ino
        p = run(args + ["--retry-errors", "--stats", t.path("s.json")])
        assert p.returncode == 0 and os.stat(t.path("out.jsonl")).st_ino == inode
        assert json.load(open(t.path("s.json")))["requests"] == 0


@test
def retry_errors_on_a_large_output_keeps_every_success_line():
    n = 3000
    with Tmp() as t:
        lines = [chat_line("r%d" % i, ("mock-fault:500 %d" if i % 97 == 50 else "x %d") % i)
                 for i in range(n)]
        write_lines(t.path("in.jsonl"), lines)
        args = ["batch", t.path("in.jsonl"), "-o", t.path("out.jsonl"), "--mock", "--quiet",
                "--max-retries", "0", "--stats", t.path("s.json")]
        assert run(args).returncode == 1
        first = by_id(read_output(t.path("out.jsonl")))
        failed = sorted(k for k, l in first.items() if l["error"])
        assert len(failed) == len([i for i in range(n) if i % 97 == 50])
        assert os.path.getsize(t.path("out.jsonl")) > 1 << 20
        heal_input(t)
        assert run(args + ["--retry-errors"]).returncode == 0
        out = read_output(t.path("out.jsonl"))
        assert len(out) == n and len(by_id(out)) == n
        again = by_id(out)
        assert all(again[k] == l for k, l in first.items() if not l["error"])
        assert all(l["error"] is None for l in out)
        stats = json.load(open(t.path("s.json")))
        assert stats["requests"] == len(failed) and stats["skipped"] == n - len(failed), stats


@test
def retry_errors_through_a_symlink_rewrites_the_file_it_names():
    with Tmp() as t:
        ids = fault_input(t, ["500"])
        os.mkdir(t.path("real"))
        os.symlink(os.path.join("real", "out.jsonl"), t.path("out.jsonl"))
        args = ["batch", t.path("in.jsonl"), "-o", t.path("out.jsonl"), "--mock", "--quiet",
                "--max-retries", "0"]
        assert run(args).returncode == 1
        heal_input(t)
        assert run(args + ["--retry-errors"]).returncode == 0
        assert os.path.islink(t.path("out.jsonl")), "the link was replaced"
        check_all_succeeded(t.path("real/out.jsonl"), ids)
        assert os.listdir(t.path("real")) == ["out.jsonl"]


@test
def retry_errors_reevaluates_unusable_input_lines():
    with Tmp() as t:
        write_lines(t.path("in.jsonl"), [chat_line("a"), "garbage", chat_line("a", "dup"),
                                         chat_line("b")])
        args = ["batch", t.path("in.jsonl"), "-o", t.path("out.jsonl"), "--mock", "--quiet",
                "--stats", t.path("s.json")]
        assert run(args).returncode == 1
        # The garbage line is fixed; the duplicate stays a duplicate.
        write_lines(t.path("in.jsonl"), [chat_line("a"), chat_line("c"), chat_line("a", "dup"),
                                         chat_line("b")])
        p = run(args + ["--retry-errors"])
        assert p.returncode == 1, p.stderr
        out = read_output(t.path("out.jsonl"))
        assert len(out) == 4, out
        dups = [l for l in out if "input_line" in l]
        assert [(d["custom_id"], d["input_line"], d["error"]["code"]) for d in dups] == \
            [("a", 3, "duplicate_custom_id")], dups
        ok = by_id(out)
        assert sorted(ok) == ["a", "b", "c"] and all(l["error"] is None for l in ok.values())
        stats = json.load(open(t.path("s.json")))
        assert stats["requests"] == 1 and stats["skipped"] == 2, stats


@test
def retry_errors_cuts_a_partial_last_line_too():
    with Tmp() as t:
        ids = fault_input(t, ["500"])
        args = ["batch", t.path("in.jsonl"), "-o", t.path("out.jsonl"), "--mock",
                "--max-retries", "0"]
        assert run(args + ["--quiet"]).returncode == 1
        with open(t.path("out.jsonl"), "a") as f:  # as if killed in the middle of a write
            f.write('{"id":"batch_req_torn","custom_id":"g9","response":{"status_')
        heal_input(t)
        p = run(args + ["--retry-errors"])
        assert p.returncode == 0, p.stderr
        assert "partial" in p.stderr and "removed 1 error line" in p.stderr, p.stderr
        check_all_succeeded(t.path("out.jsonl"), ids)


@test
def retry_errors_on_a_first_run_is_a_plain_run():
    with Tmp() as t:
        write_lines(t.path("in.jsonl"), [chat_line("a"), chat_line("b")])
        p = run(["batch", t.path("in.jsonl"), "-o", t.path("out.jsonl"), "--mock", "--quiet",
                 "--retry-errors"])
        assert p.returncode == 0, p.stderr
        check_all_succeeded(t.path("out.jsonl"), ["a", "b"])


# ---- rate limits -----------------------------------------------------------------------

@test
def rpm_bounds_the_request_rate():
    """A bucket of rpm/60 requests a second, holding at most one second's
    worth: n requests need at least (n - rpm/60) / (rpm/60) seconds."""
    n, rpm = 30, 600
    per_s = rpm / 60.0
    bound = (n - per_s) / per_s  # 2 s
    with Tmp() as t:
        write_lines(t.path("in.jsonl"), [chat_line("r%d" % i) for i in range(n)])
        start = time.time()
        p = run(["batch", t.path("in.jsonl"), "-o", t.path("out.jsonl"), "--mock", "--quiet",
                 "--rpm", str(rpm), "--stats", t.path("s.json")])
        elapsed = time.time() - start
        assert p.returncode == 0, p.stderr
        assert len(read_output(t.path("out.jsonl"))) == n
        stats = json.load(open(t.path("s.json")))
        assert stats["wall_s"] >= 0.9 * bound, ("limiter absent or too lax", stats, bound)
        assert elapsed < bound + 10, elapsed  # and it does not stall


@test
def tpm_bounds_the_token_rate():
    """Requests of about 316 tokens each (300 prompt words, 16 output)
    against 1,000 tokens a second with at most one second's worth banked:
    all but the last request's tokens must have been admitted, so at least
    (tokens - tokens/n - tpm/60) / (tpm/60) seconds."""
    n, tpm = 12, 60000
    per_s = tpm / 60.0
    prompt = " ".join(["abc"] * 300)
    with Tmp() as t:
        write_lines(t.path("in.jsonl"),
                    [json.dumps({"custom_id": "t%d" % i, "method": "POST",
                                 "url": "/v1/chat/completions",
                                 "body": {"model": "gpt-4o-mini", "max_tokens": 16,
                                          "messages": [{"role": "user", "content": prompt}]}})
                     for i in range(n)])
        p = run(["batch", t.path("in.jsonl"), "-o", t.path("out.jsonl"), "--mock", "--quiet",
                 "--tpm", str(tpm), "--stats", t.path("s.json")])
        assert p.returncode == 0, p.stderr
        stats = json.load(open(t.path("s.json")))
        tokens = stats["input_tokens"] + stats["output_tokens"]
        assert tokens >= n * 300, stats
        bound = (tokens - tokens / n - per_s) / per_s  # about 2.5 s
        assert stats["wall_s"] >= 0.9 * bound, ("limiter absent or too lax", stats, bound)


# ---- cost ------------------------------------------------------------------------------

@test
def cost_sums_priced_models_and_names_unpriced_ones():
    with Tmp() as t:
        write_lines(t.path("in.jsonl"), [chat_line("p1", model="gpt-4o-mini"),
                                         chat_line("p2", model="openai/gpt-4o-mini"),
                                         chat_line("u1", model="mock/any"),
                                         chat_line("u2", model="mock/any")])
        p = run(["batch", t.path("in.jsonl"), "-o", t.path("out.jsonl"), "--mock",
                 "--stats", t.path("s.json")])
        assert p.returncode == 0, p.stderr
        stats = json.load(open(t.path("s.json")))
        assert isinstance(stats["cost_usd"], float) and 0 < stats["cost_usd"] < 0.01, stats
        assert stats["unpriced_models"] == ["mock/any"], stats
        assert "cost: $" in p.stderr and "unpriced: mock/any" in p.stderr, p.stderr
        # The same priced lines alone cost the same: unpriced ones add nothing.
        write_lines(t.path("in2.jsonl"), [chat_line("p1", model="gpt-4o-mini"),
                                          chat_line("p2", model="openai/gpt-4o-mini")])
        assert run(["batch", t.path("in2.jsonl"), "-o", t.path("out2.jsonl"), "--mock", "--quiet",
                    "--stats", t.path("s2.json")]).returncode == 0
        priced = json.load(open(t.path("s2.json")))
        assert abs(priced["cost_usd"] - stats["cost_usd"]) < 1e-12, (priced, stats)
        assert priced["unpriced_models"] == []


@test
def cost_is_null_when_nothing_was_priced():
    with Tmp() as t:
        write_lines(t.path("in.jsonl"), [chat_line("u1", model="mock/any"),
                                         chat_line("u2", model="ollama/no-such-model")])
        p = run(["batch", t.path("in.jsonl"), "-o", t.path("out.jsonl"), "--mock",
                 "--stats", t.path("s.json")])
        assert p.returncode == 0, p.stderr
        stats = json.load(open(t.path("s.json")))
        assert stats["cost_usd"] is None, stats
        assert sorted(stats["unpriced_models"]) == ["mock/any", "ollama/no-such-model"], stats
        assert "cost: $" not in p.stderr and "unpriced: " in p.stderr, p.stderr
        # A run that used nothing prices nothing either.
        p = run(["batch", t.path("in.jsonl"), "-o", t.path("out.jsonl"), "--mock",
                 "--stats", t.path("s.json")])
        stats = json.load(open(t.path("s.json")))
        assert stats["cost_usd"] is None and stats["unpriced_models"] == [], stats


@test
def failures_without_usage_are_not_priced():
    with Tmp() as t:
        write_lines(t.path("in.jsonl"), [chat_line("f", "mock-fault:500", model="mock/any")])
        p = run(["batch", t.path("in.jsonl"), "-o", t.path("out.jsonl"), "--mock", "--quiet",
                 "--max-retries", "0", "--stats", t.path("s.json")])
        assert p.returncode == 1
        stats = json.load(open(t.path("s.json")))
        assert stats["cost_usd"] is None and stats["unpriced_models"] == [], stats


# ---- summary and progress ----------------------------------------------------------------

@test
def summary_names_every_figure():
    with Tmp() as t:
        write_lines(t.path("in.jsonl"), [chat_line("a"), chat_line("b", "mock-fault:500")])
        p = run(["batch", t.path("in.jsonl"), "-o", t.path("out.jsonl"), "--mock",
                 "--max-retries", "1"])
        assert p.returncode == 1
        s = p.stderr
        for piece in ("2 requests", "1 succeeded", "1 failed", "0 skipped", "1 retries",
                      " input", " output", "cost: $", " s, ", "requests/s"):
            assert piece in s, (piece, s)
        assert "\r" not in s and "\033" not in s, repr(s)


def run_on_terminal(args, timeout=60):
    """Runs llmring with stderr on a pseudo-terminal; returns (status,
    everything written to the terminal)."""
    import pty
    master, slave = pty.openpty()
    proc = subprocess.Popen([LLMRING] + args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=slave, env=clean_env())
    os.close(slave)
    chunks = []
    deadline = time.time() + timeout
    try:
        while time.time() < deadline:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every writer has gone
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
    return status, b"".join(chunks).decode("utf-8", "replace")


@test
def progress_bar_on_a_terminal_is_drawn_then_cleared():
    n = 40
    with Tmp() as t:
        write_lines(t.path("in.jsonl"), [chat_line("r%d" % i) for i in range(n)])
        # --rpm stretches the run over a few redraws.
        status, screen = run_on_terminal(["batch", t.path("in.jsonl"), "-o", t.path("out.jsonl"),
                                          "--mock", "--rpm", "1200"])
        assert status == 0, screen
        assert len(read_output(t.path("out.jsonl"))) == n
        bars = [seg for seg in screen.split("\r") if "in flight" in seg]
        assert bars, repr(screen)
        assert any(("/%d lines" % n) in b for b in bars), bars
        for b in bars:
            assert b.endswith("\033[K") and "\n" not in b, repr(b)
            assert "req/s" in b and "tok/s" in b and "failed" in b, repr(b)
        assert any("ETA" in b for b in bars) and any("$" in b for b in bars), bars
        # Cleared (carriage return, erase line) after the last bar, before the summary.
        last = screen.rfind("in flight")
        clear = screen.find("\r\033[K", last)
        summary = screen.find("requests:")
        assert last < clear < summary, repr(screen[last - 200:])
        assert "in flight" not in screen[summary:]


@test
def progress_bar_is_not_drawn_with_quiet():
    with Tmp() as t:
        write_lines(t.path("in.jsonl"), [chat_line("r%d" % i) for i in range(20)])
        status, screen = run_on_terminal(["batch", t.path("in.jsonl"), "-o", t.path("out.jsonl"),
                                          "--mock", "--rpm", "1200", "--quiet"])
        assert status == 0 and screen == "", repr(screen)
        assert len(read_output(t.path("out.jsonl"))) == 20


# ---- endpoints, keys, servers ------------------------------------------------------

@test
def separate_mock_process_via_base_url_and_env():
    with Tmp() as t, MockProcess() as mock:
        write_lines(t.path("in.jsonl"), [chat_line("a"), embed_line("b")])
        p = run(["batch", t.path("in.jsonl"), "-o", t.path("out.jsonl"), "--base-url",
                 mock.base, "--quiet"])
        assert p.returncode == 0, p.stderr
        assert len(read_output(t.path("out.jsonl"))) == 2
        # OPENAI_BASE_URL is used when there is no --base-url.
        p = run(["batch", t.path("in.jsonl"), "-o", t.path("out2.jsonl"), "--quiet"],
                env=clean_env(OPENAI_BASE_URL=mock.base))
        assert p.returncode == 0, p.stderr
        assert len(read_output(t.path("out2.jsonl"))) == 2


@test
def requests_go_to_the_right_paths_without_auth_for_a_keyless_server():
    with Tmp() as t, PyServer() as srv:
        write_lines(t.path("in.jsonl"), [chat_line("a"), embed_line("b"),
                                         chat_line("c", url="/chat/completions")])
        p = run(["batch", t.path("in.jsonl"), "-o", t.path("out.jsonl"), "--base-url",
                 srv.base + "/", "--quiet"])
        assert p.returncode == 0, p.stderr
        paths = sorted(r["path"] for r in srv.requests)
        assert paths == ["/v1/chat/completions", "/v1/chat/completions", "/v1/embeddings"], paths
        for r in srv.requests:
            assert not any(h.lower() == "authorization" for h in r["headers"]), r["headers"]
        out = by_id(read_output(t.path("out.jsonl")))
        assert out["a"]["response"]["request_id"].startswith("req_py_")
        assert out["a"]["response"]["body"]["choices"][0]["message"]["content"] == \
            "line one\nline \"two\" \u00e9"


@test
def key_from_environment_is_sent_and_never_written():
    with Tmp() as t, PyServer() as srv:
        write_lines(t.path("in.jsonl"), [chat_line("a", "srv:401"), chat_line("b")])
        p = run(["batch", t.path("in.jsonl"), "-o", t.path("out.jsonl"), "--base-url",
                 srv.base, "--stats", t.path("s.json")],
                env=clean_env(OPENAI_API_KEY=SECRET))
        assert p.returncode == 1, p.stderr
        for r in srv.requests:
            auth = {k.lower(): v for k, v in r["headers"].items()}.get("authorization")
            assert auth == "Bearer " + SECRET
        check_secret_absent(t.path("out.jsonl"), t.path("s.json"))
        out = by_id(read_output(t.path("out.jsonl")))
        assert out["a"]["error"]["code"] == "auth_error"
        assert out["a"]["response"]["status_code"] == 401
        assert out["a"]["response"]["body"]["error"]["code"] == "invalid_api_key"


@test
def model_override_rewrites_the_sent_body():
    with Tmp() as t, PyServer() as srv:
        write_lines(t.path("in.jsonl"), [chat_line("a", model="orig"),
                                         embed_line("b", model="orig-embed")])
        assert run(["batch", t.path("in.jsonl"), "-o", t.path("out.jsonl"), "--base-url",
                    srv.base, "--model", "meta-llama/Llama-3.1-8B-Instruct",
                    "--quiet"]).returncode == 0
        for r in srv.requests:
            assert json.loads(r["body"])["model"] == "meta-llama/Llama-3.1-8B-Instruct"


@test
def pretty_printed_bodies_stay_on_one_line():
    with Tmp() as t, PyServer() as srv:
        write_lines(t.path("in.jsonl"), [chat_line("a", "srv:pretty"), embed_line("b", "srv:pretty")])
        assert run(["batch", t.path("in.jsonl"), "-o", t.path("out.jsonl"), "--base-url",
                    srv.base, "--quiet"]).returncode == 0
        out = read_output(t.path("out.jsonl"))  # one JSON object a line
        assert len(out) == 2
        body = by_id(out)["a"]["response"]["body"]
        assert body["choices"][0]["message"]["content"] == "line one\nline \"two\" \u00e9"
        assert body["usage"]["completion_tokens"] == 7


@test
def error_body_that_is_not_json_is_kept_as_a_string():
    with Tmp() as t, PyServer() as srv:
        write_lines(t.path("in.jsonl"), [chat_line("a", "srv:404text"), chat_line("b", "srv:429")])
        assert run(["batch", t.path("in.jsonl"), "-o", t.path("out.jsonl"), "--base-url",
                    srv.base, "--quiet"]).returncode == 1
        out = by_id(read_output(t.path("out.jsonl")))
        a = out["a"]
        assert a["error"]["code"] == "not_found"
        assert a["response"]["status_code"] == 404
        assert a["response"]["body"] == "no such route\nat all"
        assert out["b"]["error"]["code"] == "rate_limited"
        assert out["b"]["response"]["status_code"] == 429


@test
def connect_failure_is_a_transport_error():
    with Tmp() as t:
        write_lines(t.path("in.jsonl"), [chat_line("a")])
        p = run(["batch", t.path("in.jsonl"), "-o", t.path("out.jsonl"), "--base-url",
                 "http://127.0.0.1:%d/v1" % free_port(), "--connect-timeout", "2", "--quiet"])
        assert p.returncode == 1, p.stderr
        line = read_output(t.path("out.jsonl"))[0]
        check_shape(line)
        assert line["response"] is None
        assert line["error"]["code"] == "connect_error", line


@test
def total_timeout_fires_with_fractional_seconds():
    with Tmp() as t:
        write_lines(t.path("in.jsonl"), [chat_line("slow", "mock-fault:slow-headers"),
                                         chat_line("fast")])
        start = time.time()
        p = run(["batch", t.path("in.jsonl"), "-o", t.path("out.jsonl"), "--mock",
                 "--timeout", "0.4", "--quiet"])
        assert time.time() - start < 10
        assert p.returncode == 1
        out = by_id(read_output(t.path("out.jsonl")))
        assert out["slow"]["error"]["code"] == "timeout" and out["slow"]["response"] is None
        assert out["fast"]["error"] is None


# ---- TLS (HTTPS mock with test certificates) -----------------------------------------

TLS_IDS = ["t1", "t2", "t3", "t4"]


def tls_input(t):
    write_lines(t.path("in.jsonl"), [chat_line(i) for i in TLS_IDS[:3]] + [embed_line("t4")])
    return t.path("in.jsonl")


@test
def https_with_cacert_succeeds():
    with Certs() as c, Tmp() as t, c.mock() as mock:
        assert mock.url.startswith("https://"), mock.url
        p = run(["batch", tls_input(t), "-o", t.path("out.jsonl"), "--base-url", https_base(mock),
                 "--cacert", c.path("ca.crt"), "--quiet"])
        assert p.returncode == 0, p.stderr
        assert INSECURE_WARNING not in p.stderr
        out = check_all_succeeded(t.path("out.jsonl"), TLS_IDS)
        assert by_id(out)["t1"]["response"]["body"]["object"] == "chat.completion"


@test
def https_without_cacert_is_untrusted_and_the_output_is_complete():
    with Certs() as c, Tmp() as t, c.mock() as mock:
        p = run(["batch", tls_input(t), "-o", t.path("out.jsonl"), "--base-url", https_base(mock),
                 "--quiet"])
        assert p.returncode == 1, p.stderr
        out = check_all_failed(t.path("out.jsonl"), TLS_IDS, "tls_untrusted")
        assert "localhost" in out[0]["error"]["message"], out[0]


@test
def ssl_cert_file_works_like_cacert_and_cacert_wins():
    with Certs() as c, Tmp() as t, c.mock() as mock:
        inp = tls_input(t)
        p = run(["batch", inp, "-o", t.path("out.jsonl"), "--base-url", https_base(mock),
                 "--quiet"], env=clean_env(SSL_CERT_FILE=c.path("ca.crt")))
        assert p.returncode == 0, p.stderr
        check_all_succeeded(t.path("out.jsonl"), TLS_IDS)
        # OPENAI_BASE_URL may be https too; the key goes over TLS.
        p = run(["batch", inp, "-o", t.path("out2.jsonl"), "--quiet"],
                env=clean_env(SSL_CERT_FILE=c.path("ca.crt"), OPENAI_BASE_URL=https_base(mock),
                              OPENAI_API_KEY=SECRET))
        assert p.returncode == 0, p.stderr
        check_all_succeeded(t.path("out2.jsonl"), TLS_IDS)
        check_secret_absent(t.path("out2.jsonl"))
        # --cacert replaces SSL_CERT_FILE: a CA that did not sign the server fails.
        p = run(["batch", inp, "-o", t.path("out3.jsonl"), "--base-url", https_base(mock),
                 "--cacert", c.path("untrusted-ca.crt"), "--quiet"],
                env=clean_env(SSL_CERT_FILE=c.path("ca.crt")))
        assert p.returncode == 1, p.stderr
        check_all_failed(t.path("out3.jsonl"), TLS_IDS, "tls_untrusted")


@test
def wrong_name_and_expired_certificates_fail_with_their_codes():
    with Certs() as c, Tmp() as t:
        inp = tls_input(t)
        with c.mock("other") as mock:
            p = run(["batch", inp, "-o", t.path("out.jsonl"), "--base-url", https_base(mock),
                     "--cacert", c.path("ca.crt"), "--quiet"])
            assert p.returncode == 1, p.stderr
            check_all_failed(t.path("out.jsonl"), TLS_IDS, "tls_name_mismatch")
        with c.mock("expired") as mock:
            p = run(["batch", inp, "-o", t.path("out2.jsonl"), "--base-url", https_base(mock),
                     "--cacert", c.path("ca.crt"), "--quiet"])
            assert p.returncode == 1, p.stderr
            check_all_failed(t.path("out2.jsonl"), TLS_IDS, "tls_expired")


@test
def insecure_skips_verification_and_warns():
    with Certs() as c, Tmp() as t, c.mock("other") as mock:
        inp = tls_input(t)
        p = run(["batch", inp, "-o", t.path("out.jsonl"), "--base-url", https_base(mock),
                 "--insecure", "--quiet"])
        assert p.returncode == 0, p.stderr
        assert p.stderr.count(INSECURE_WARNING) == 1, p.stderr
        assert p.stderr.startswith("llmring batch: "), p.stderr
        check_all_succeeded(t.path("out.jsonl"), TLS_IDS)
        p = run(["chat", "--no-stream", "--base-url", https_base(mock), "--insecure", "hello"])
        assert p.returncode == 0, p.stderr
        assert p.stdout.strip(), p.stdout
        assert "llmring chat: " + INSECURE_WARNING in p.stderr, p.stderr


@test
def https_to_an_ip_address_checks_the_ip_san():
    with Certs() as c, Tmp() as t:
        inp = tls_input(t)
        with c.mock() as mock:
            p = run(["batch", inp, "-o", t.path("out.jsonl"), "--base-url",
                     https_base(mock, "127.0.0.1"), "--cacert", c.path("ca.crt"), "--quiet"])
            assert p.returncode == 0, p.stderr
            check_all_succeeded(t.path("out.jsonl"), TLS_IDS)
        with c.mock("noip") as mock:  # DNS:localhost only: not valid for 127.0.0.1
            p = run(["batch", inp, "-o", t.path("out2.jsonl"), "--base-url",
                     https_base(mock, "127.0.0.1"), "--cacert", c.path("ca.crt"), "--quiet"])
            assert p.returncode == 1, p.stderr
            check_all_failed(t.path("out2.jsonl"), TLS_IDS, "tls_name_mismatch")


@test
def cacert_that_is_not_a_bundle_fails_every_line_with_the_reason():
    with Certs() as c, Tmp() as t, c.mock() as mock:
        write_lines(t.path("junk.crt"), ["not a certificate"])
        start = time.time()
        p = run(["batch", tls_input(t), "-o", t.path("out.jsonl"), "--base-url", https_base(mock),
                 "--cacert", t.path("junk.crt"), "--quiet"], timeout=30)
        assert time.time() - start < 10
        assert p.returncode == 1, p.stderr
        for l in read_output(t.path("out.jsonl")):
            check_shape(l)
            assert l["error"] is not None and l["response"] is None, l
            assert "junk.crt" in l["error"]["message"], l
        assert len(read_output(t.path("out.jsonl"))) == len(TLS_IDS)


@test
def unresolvable_host_is_a_connect_error_naming_it():
    with Tmp() as t:
        start = time.time()
        p = run(["batch", tls_input(t), "-o", t.path("out.jsonl"), "--base-url",
                 "http://nonexistent.invalid:9/v1", "--quiet"], timeout=60)
        assert time.time() - start < 30
        assert p.returncode == 1, p.stderr
        out = check_all_failed(t.path("out.jsonl"), TLS_IDS, "connect_error")
        for l in out:
            assert "nonexistent.invalid" in l["error"]["message"], l
        p = run(["chat", "--no-stream", "--base-url", "http://nonexistent.invalid:9/v1", "hi"])
        assert p.returncode == 1 and p.stdout == "", p.stderr
        assert "connect_error" in p.stderr and "nonexistent.invalid" in p.stderr, p.stderr


@test
def chat_over_https_prints_the_reply():
    with Certs() as c, c.mock() as mock:
        p = run(["chat", "--no-stream", "--base-url", https_base(mock), "--cacert",
                 c.path("ca.crt"), "hello"])
        assert p.returncode == 0, p.stderr
        assert p.stdout.endswith("\n") and p.stdout.strip(), p.stdout
        assert INSECURE_WARNING not in p.stderr
        p = run(["chat", "--no-stream", "--base-url", https_base(mock), "hello"])
        assert p.returncode == 1 and p.stdout == "", p.stdout
        assert "tls_untrusted" in p.stderr, p.stderr


# ---- refusals and usage errors ------------------------------------------------------

@test
def bad_rate_limits_are_refused_before_anything_is_written():
    cases = [["--rpm", "0"], ["--rpm", "-5"], ["--rpm", "fast"], ["--rpm", "1.5x"], ["--tpm", "0"],
             ["--tpm", "lots"], ["--rpm"], ["--retry-errors=yes"]]
    with Tmp() as t:
        write_lines(t.path("in.jsonl"), [chat_line("a")])
        for extra in cases:
            p = run(["batch", t.path("in.jsonl"), "-o", t.path("out.jsonl"), "--mock"] + extra)
            assert p.returncode == 2, (extra, p.returncode)
            assert p.stderr.strip() and "not built yet" not in p.stderr, (extra, p.stderr)
            assert not os.path.exists(t.path("out.jsonl")), extra
        # Every batch flag of the contract is accepted now, = form too.
        p = run(["batch", t.path("in.jsonl"), "-o", t.path("out.jsonl"), "--mock",
                 "--max-retries", "0", "--rpm=100000", "--tpm", "100000000", "--retry-errors",
                 "--quiet"])
        assert p.returncode == 0, p.stderr
        assert len(read_output(t.path("out.jsonl"))) == 1


@test
def default_endpoint_needs_a_key():
    with Tmp() as t:
        write_lines(t.path("in.jsonl"), [chat_line("a")])
        p = run(["batch", t.path("in.jsonl"), "-o", t.path("out.jsonl")])
        assert p.returncode == 2 and "OPENAI_API_KEY" in p.stderr, p.stderr
        assert "api.openai.com" in p.stderr, p.stderr
        assert not os.path.exists(t.path("out.jsonl"))
        # (With a key the default endpoint would be tried: not done here,
        # tests never reach the internet.)


@test
def tls_flags_with_mock_are_accepted_and_change_nothing():
    with Tmp() as t:
        write_lines(t.path("in.jsonl"), [chat_line("a"), chat_line("b")])
        p = run(["batch", t.path("in.jsonl"), "-o", t.path("out.jsonl"), "--mock", "--quiet",
                 "--cacert", t.path("no-such-ca.crt"), "--insecure"])
        assert p.returncode == 0, p.stderr
        assert p.stderr == "", p.stderr
        check_all_succeeded(t.path("out.jsonl"), ["a", "b"])


@test
def unreadable_cacert_is_a_usage_error():
    with Tmp() as t:
        write_lines(t.path("in.jsonl"), [chat_line("a")])
        for bad in [t.path("missing.crt"), t.dir.name, ""]:
            p = run(["batch", t.path("in.jsonl"), "-o", t.path("out.jsonl"), "--base-url",
                     "https://localhost:1/v1", "--cacert", bad])
            assert p.returncode == 2, (bad, p.returncode, p.stderr)
            assert "--cacert" in p.stderr, p.stderr
            assert not os.path.exists(t.path("out.jsonl"))
            p = run(["chat", "--no-stream", "--base-url", "https://localhost:1/v1",
                     "--cacert", bad, "hi"])
            assert p.returncode == 2 and "--cacert" in p.stderr, (bad, p.stderr)


@test
def bad_usage_exits_2():
    with Tmp() as t:
        write_lines(t.path("in.jsonl"), [chat_line("a")])
        inp, out = t.path("in.jsonl"), t.path("out.jsonl")
        cases = [
            ["batch", inp],                                   # no -o
            ["batch", "-o", out, "--mock"],                   # no input
            ["batch", t.path("missing.jsonl"), "-o", out, "--mock"],
            ["batch", inp, "-o", out, "--mock", "--concurrency", "0"],
            ["batch", inp, "-o", out, "--mock", "--concurrency", "many"],
            ["batch", inp, "-o", out, "--mock", "--timeout", "-1"],
            ["batch", inp, "-o", out, "--mock", "--timeout", "nan"],
            ["batch", inp, "-o", out, "--mock", "--idle-timeout"],
            ["batch", inp, "-o", out, "--mock", "--bogus"],
            ["batch", inp, "-o", out, "--mock", "--quiet=yes"],
            ["batch", inp, "extra.jsonl", "-o", out, "--mock"],
            ["batch", inp, "-o", out, "--mock", "--base-url", "http://127.0.0.1:1/v1"],
            ["batch", inp, "-o", out, "--base-url", "ftp://x/v1"],
            ["batch", inp, "-o", out, "--base-url", "https://"],
            ["batch", inp, "-o", out, "--base-url", "https://localhost/v1",
             "--cacert", t.path("missing.crt")],
            ["batch", inp, "-o", t.path("no/such/dir/out.jsonl"), "--mock"],
        ]
        for args in cases:
            p = run(args)
            assert p.returncode == 2, (args, p.returncode, p.stderr)
            assert p.stderr.strip(), args
        assert not os.path.exists(out)


# ---- chat and bench -------------------------------------------------------------------

@test
def chat_streams_the_reply_as_it_arrives():
    with MockProcess() as mock:
        p = run(["chat", "--base-url", mock.base, "--system", "be brief", "Say hello"])
        assert p.returncode == 0, p.stderr
        assert p.stdout.endswith("\n")
        words = p.stdout.split()
        assert len(words) == 16, p.stdout  # the mock's default reply length
        # Streaming and non-streaming give the same reply for the same request.
        q = run(["chat", "--base-url", mock.base, "--no-stream", "--system", "be brief", "Say hello"])
        assert q.returncode == 0 and len(q.stdout.split()) == 16
    p = run(["chat", "--base-url", "http://127.0.0.1:%d/v1" % free_port(), "hi"])
    assert p.returncode == 1 and "connect_error" in p.stderr and p.stdout == ""


@test
def chat_no_stream_prints_the_reply():
    with MockProcess() as mock:
        p = run(["chat", "--base-url", mock.base, "--no-stream", "--system", "be brief",
                 "--model", "any-model", "--timeout", "10", "Say hello"])
        assert p.returncode == 0, p.stderr
        assert p.stdout.endswith("\n") and len(p.stdout.strip()) > 0
    with PyServer() as srv:
        p = run(["chat", "--no-stream", "hi there"], env=clean_env(OPENAI_BASE_URL=srv.base))
        assert p.returncode == 0, p.stderr
        assert p.stdout == "line one\nline \"two\" \u00e9\n"
        sent = json.loads(srv.requests[0]["body"])
        assert sent["model"] == "gpt-4o-mini"
        assert sent["messages"][-1] == {"role": "user", "content": "hi there"}
        assert srv.requests[0]["path"] == "/v1/chat/completions"


@test
def chat_errors_go_to_stderr_with_status_1():
    p = run(["chat", "--no-stream", "--base-url", "http://127.0.0.1:%d/v1" % free_port(), "hi"])
    assert p.returncode == 1 and p.stdout == "" and "connect" in p.stderr, p.stderr
    with PyServer() as srv:
        p = run(["chat", "--no-stream", "--base-url", srv.base, "srv:401"],
                env=clean_env(OPENAI_API_KEY=SECRET))
        assert p.returncode == 1 and "auth_error" in p.stderr, p.stderr


@test
def chat_refusals():
    p = run(["chat", "--no-stream", "hi"])
    assert p.returncode == 2 and "OPENAI_API_KEY" in p.stderr
    p = run(["chat", "--no-stream", "--base-url", "http://127.0.0.1:1/v1"])
    assert p.returncode == 2  # no prompt
    p = run(["chat", "--no-stream", "--frob", "hi"])
    assert p.returncode == 2


# ---- main --------------------------------------------------------------------------------

@test
def mock_batch_routes_every_provider_and_answers_in_openai_shape():
    models = ["gpt-4o-mini", "openai/gpt-4o", "anthropic/claude-haiku-4-5", "ollama/qwen3:4b",
              "gemini/gemini-2.0-flash", "mock/any"]
    with Tmp() as t:
        lines = [chat_line("c%d" % i, "say four words", model=m) for i, m in enumerate(models)]
        lines.append(embed_line("e-ollama", "two words", model="ollama/nomic-embed-text"))
        lines.append(json.dumps({"custom_id": "e-anthropic", "method": "POST",
                                 "url": "/v1/embeddings",
                                 "body": {"model": "anthropic/claude-haiku-4-5", "input": "x"}}))
        write_lines(t.path("in.jsonl"), lines)
        p = run(["batch", t.path("in.jsonl"), "-o", t.path("out.jsonl"), "--mock", "--quiet",
                 "--stats", t.path("stats.json")])
        assert p.returncode == 1, p.stderr  # the anthropic embeddings line fails
        out = by_id(read_output(t.path("out.jsonl")))
        assert len(out) == len(lines)
        for i, m in enumerate(models):
            line = out["c%d" % i]
            check_shape(line)
            assert line["error"] is None, (m, line)
            body = line["response"]["body"]
            assert body["object"] == "chat.completion", (m, body)
            msg = body["choices"][0]["message"]
            assert msg["role"] == "assistant" and len(msg["content"].split()) > 0, (m, body)
            assert body["choices"][0]["finish_reason"] == "stop", (m, body)
            assert body["usage"]["prompt_tokens"] == 3, (m, body)
            assert body["usage"]["completion_tokens"] > 0, (m, body)
        emb = out["e-ollama"]
        assert emb["error"] is None, emb
        assert emb["response"]["body"]["data"][0]["object"] == "embedding"
        assert emb["response"]["body"]["usage"]["prompt_tokens"] == 2
        bad = out["e-anthropic"]
        assert bad["error"]["code"] == "unsupported" and bad["response"] is None, bad
        stats = json.load(open(t.path("stats.json")))
        assert stats["succeeded"] == len(lines) - 1 and stats["failed"] == 1, stats


@test
def batch_without_a_key_for_the_first_lines_provider_is_refused():
    with Tmp() as t:
        write_lines(t.path("in.jsonl"), [chat_line("a", model="anthropic/claude-haiku-4-5")])
        p = run(["batch", t.path("in.jsonl"), "-o", t.path("out.jsonl")],
                env=clean_env(OPENAI_API_KEY=SECRET))
        assert p.returncode == 2 and "ANTHROPIC_API_KEY" in p.stderr, p.stderr
        assert not os.path.exists(t.path("out.jsonl"))


@test
def chat_speaks_every_provider():
    with MockProcess("--tokens", "5", "--itl-ms", "5") as mock:
        for model in ["gpt-4o-mini", "anthropic/claude-haiku-4-5", "ollama/qwen3:4b",
                      "gemini/gemini-2.0-flash", "mock/any"]:
            for extra in ([], ["--no-stream"]):
                p = run(["chat", "--model", model, "--base-url", mock.url, "--system", "be brief"]
                        + extra + ["hello there"])
                assert p.returncode == 0, (model, extra, p.stderr)
                assert p.stdout.endswith("\n") and len(p.stdout.split()) == 5, (model, p.stdout)
        # The provider's own error shape still becomes the right code.
        p = run(["chat", "--model", "anthropic/claude-haiku-4-5", "--base-url", mock.url,
                 "mock-fault:529"])
        assert p.returncode == 1 and "overloaded" in p.stderr, p.stderr
        # No key for a provider's public endpoint: nothing is sent.
        p = run(["chat", "--model", "gemini/gemini-2.0-flash", "hi"])
        assert p.returncode == 2 and "GEMINI_API_KEY" in p.stderr, p.stderr


@test
def faults_are_retried_and_counted():
    with Tmp() as t:
        lines = [chat_line("r%d" % i, "mock-fault:%s" % kind)
                 for i, kind in enumerate(["500", "503", "reset", "truncate", "529"])]
        lines.append(chat_line("q", "mock-fault:429"))
        write_lines(t.path("in.jsonl"), lines)
        # Every fault fires on each attempt (the marker is in the body): the
        # retries are spent and each line ends in its error.
        p = run(["batch", t.path("in.jsonl"), "-o", t.path("out.jsonl"), "--mock", "--quiet",
                 "--max-retries", "1", "--stats", t.path("s.json")])
        assert p.returncode == 1, p.stderr
        stats = json.load(open(t.path("s.json")))
        assert stats["retries"] == len(lines), stats
        out = by_id(read_output(t.path("out.jsonl")))
        assert out["r0"]["error"]["code"] == "server_error"
        assert out["r1"]["error"]["code"] == "overloaded"
        assert out["r2"]["error"]["code"] == "connection_reset", out["r2"]
        assert out["q"]["error"]["code"] == "rate_limited"
        # --max-retries 0: each tried once.
        p = run(["batch", t.path("in.jsonl"), "-o", t.path("out0.jsonl"), "--mock", "--quiet",
                 "--max-retries", "0", "--stats", t.path("s0.json")])
        assert json.load(open(t.path("s0.json")))["retries"] == 0


def run_tests(tests, program):
    """Runs each test (TEST_ONLY=substring picks some); prints the
    "N tests, N passed, N failed" line. argv[1] is the llmring binary."""
    global LLMRING
    if len(sys.argv) != 2:
        print("usage: %s PATH/TO/llmring" % program, file=sys.stderr)
        return 2
    LLMRING = os.path.abspath(sys.argv[1])
    only = os.environ.get("TEST_ONLY")
    failed = []
    ran = 0
    for fn in tests:
        if only and only not in fn.__name__:
            continue
        ran += 1
        start = time.time()
        try:
            fn()
            print("ok    %-70s %.2fs" % (fn.__name__, time.time() - start), flush=True)
        except Skip as why:
            print("skip  %-70s (%s)" % (fn.__name__, why), flush=True)
        except Exception:
            failed.append(fn.__name__)
            print("FAIL  %s" % fn.__name__, flush=True)
            traceback.print_exc()
    print("%d tests, %d passed, %d failed%s" % (ran, ran - len(failed), len(failed),
          (": " + ", ".join(failed)) if failed else ""))
    return 1 if failed else 0


def main():
    return run_tests(TESTS, "test_cli_batch.py")


if __name__ == "__main__":
    sys.exit(main())
