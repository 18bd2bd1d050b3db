#!/usr/bin/env python3
"""End-to-end tests of `llmring batch --via provider-batch` (issue 13).

usage: test_cli_provider_batch.py PATH/TO/llmring

The server is `llmring mock` as its own process with --state-dir (so a batch
survives the client's kill -9, and the mock's own restart) and short batch
phases; its GET /mock/stats and /mock/submits count how often each custom_id
was submitted in a batch. Small part limits come from LLMRING_BATCH_MAX_LINES.
A tiny Python server stands for an OpenAI-compatible server without batches.
TEST_ONLY=substring runs some tests. Exits 0 when every test passed.
"""
import http.server
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.request

LLMRING = None
TESTS = []
OPENAI = "openai/gpt-4o-mini"
ANTHROPIC = "anthropic/claude-haiku-4-5"


def test(fn):
    TESTS.append(fn)
    return fn


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OPENAI_", "ANTHROPIC_", "GEMINI_", "OLLAMA_", "LLMRING_"))}
    env.update(extra)
    return env


class Mock:
    """`llmring mock` in its own process, keeping batches in state_dir."""

    def __init__(self, state_dir, *args, port=0):
        self.state_dir = state_dir
        self.args = list(args)
        self.start(port)

    def start(self, port=0):
        self.proc = subprocess.Popen(
            [LLMRING, "mock", "--listen", "127.0.0.1:%d" % port, "--state-dir", self.state_dir]
            + self.args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        first = self.proc.stdout.readline().strip()
        assert first.startswith("listening on http://"), (first, self.proc.stderr.read())
        self.url = first[len("listening on "):]
        self.port = int(self.url.rsplit(":", 1)[1])

    def stop(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()
        self.proc.stderr.close()

    def restart(self, *args):
        """Stops and starts again on the same port with these flags."""
        self.stop()
        self.args = list(args)
        self.start(self.port)

    def get(self, path):
        with urllib.request.urlopen(self.url + path, timeout=10) as r:
            return r.read().decode()

    def stats(self):
        return json.loads(self.get("/mock/stats"))

    def submits(self):
        """custom_id -> times submitted in a batch."""
        out = {}
        for line in self.get("/mock/submits").splitlines():
            if line.strip():
                o = json.loads(line)
                out[o["custom_id"]] = o["count"]
        return out

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def write_input(path, n, models=(OPENAI, ANTHROPIC), ids=None, extra=None):
    with open(path, "w") as f:
        for i in range(n):
            body = {"model": models[i % len(models)], "max_tokens": 8,
                    "messages": [{"role": "user", "content": "hello number %d" % i}]}
            if extra:
                body.update(extra(i))
            cid = ids(i) if ids else "r%d" % i
            f.write(json.dumps({"custom_id": cid, "method": "POST",
                                "url": "/v1/chat/completions", "body": body}) + "\n")


def read_output(path):
    with open(path) as f:
        return [json.loads(l) for l in f if l.strip()]


def batch_args(inp, out, base, *extra):
    return [LLMRING, "batch", inp, "-o", out, "--via", "provider-batch", "--base-url", base,
            "--poll", "0.1"] + list(extra)


def run(args, env=None, timeout=120):
    p = subprocess.run(args, capture_output=True, text=True, timeout=timeout,
                       env=env if env is not None else clean_env())
    # Under ASan+UBSan a report is a failure even when the status is 0.
    assert "runtime error:" not in p.stderr and "Sanitizer" not in p.stderr, p.stderr
    return p


def check_one_outcome_each(out_path, n):
    """Exactly one outcome line per custom_id r0..r{n-1}; the lines."""
    out = read_output(out_path)
    ids = [l["custom_id"] for l in out]
    assert len(ids) == len(set(ids)), "duplicate outcomes: %d lines, %d ids" % (
        len(ids), len(set(ids)))
    assert set(ids) == {"r%d" % i for i in range(n)}, (len(ids), n)
    return out


def check_never_twice(mock, n):
    st = mock.stats()
    assert st["max_submits"] == 1, st
    assert st["repeated_custom_ids"] == 0, st
    assert st["batch_lines_submitted"] == n, st


# ---- the flow ----------------------------------------------------------------

@test
def test_both_providers_through_the_in_process_mock():
    with tempfile.TemporaryDirectory() as d:
        inp, out = os.path.join(d, "in.jsonl"), os.path.join(d, "out.jsonl")
        write_input(inp, 20)
        p = run([LLMRING, "batch", inp, "-o", out, "--via", "provider-batch", "--mock",
                 "--poll", "0.1", "--stats", os.path.join(d, "s.json")])
        assert p.returncode == 0, p.stderr
        lines = check_one_outcome_each(out, 20)
        for l in lines:
            assert l["error"] is None, l
            body = l["response"]["body"]
            assert body["object"] == "chat.completion", l
            assert body["choices"][0]["message"]["content"], l
            assert body["usage"]["completion_tokens"] > 0, l
        # Anthropic's messages are translated: msg_ ids, OpenAI-shaped bodies.
        anth = [l for l in lines if int(l["custom_id"][1:]) % 2 == 1]
        assert all(l["response"]["request_id"].startswith("msg_") for l in anth), anth[0]
        assert "planned in 2 parts" in p.stderr, p.stderr
        state = json.load(open(out + ".state.json"))
        assert [pt["status"] for pt in state["parts"]] == ["merged", "merged"], state
        assert {pt["api"] for pt in state["parts"]} == {"openai", "anthropic"}, state
        # Batched tokens are priced at half the direct rate; the saving is the other half.
        stats = json.load(open(os.path.join(d, "s.json")))
        assert stats["via"] == "provider-batch" and stats["batch_parts"] == 2, stats
        assert stats["batch_lines_merged"] == 20 and stats["succeeded"] == 20, stats
        assert stats["batch_output_tokens"] == stats["output_tokens"] > 0, stats
        assert stats["batch_cost_usd"] > 0, stats
        assert abs(stats["batch_saving_usd"] - stats["batch_cost_usd"]) < 1e-12, stats
        assert abs(stats["cost_usd"] - stats["batch_cost_usd"]) < 1e-12, stats
        assert "at batch rates" in p.stderr and "saved $" in p.stderr, p.stderr


@test
def test_batched_tokens_are_priced_at_the_tables_batch_rates():
    """Rates from LLMRING_PRICES (not a fixed half): gpt-4o-mini's batch rates are 30 % of
    its direct ones; claude-haiku-4-5 has none, so it costs its direct price, with a notice."""
    with tempfile.TemporaryDirectory() as d:
        inp, out = os.path.join(d, "in.jsonl"), os.path.join(d, "out.jsonl")
        prices = os.path.join(d, "prices.json")
        with open(prices, "w") as f:
            json.dump({"version": 1, "prices": {
                "gpt-4o-mini": {"input": 100, "cached_input": 50, "output": 200,
                                "batch_input": 30, "batch_cached_input": 15, "batch_output": 60},
                "claude-haiku-4-5": {"input": 10, "output": 20}}}, f)
        write_input(inp, 20)
        stats_path = os.path.join(d, "s.json")
        p = run([LLMRING, "batch", inp, "-o", out, "--via", "provider-batch", "--mock",
                 "--poll", "0.1", "--stats", stats_path], env=clean_env(LLMRING_PRICES=prices))
        assert p.returncode == 0, p.stderr
        direct = batch = 0.0
        rated = {"gpt-4o-mini": (100, 50, 200, 30, 15, 60), "claude-haiku-4-5": (10, 10, 20) * 2}
        for l in check_one_outcome_each(out, 20):
            body = l["response"]["body"]
            u = body["usage"]
            cached = (u.get("prompt_tokens_details") or {}).get("cached_tokens", 0)
            pin, pc, pout, bin_, bc, bout = next(v for k, v in rated.items()
                                                  if body["model"].startswith(k))
            uncached = u["prompt_tokens"] - cached
            direct += (uncached * pin + cached * pc + u["completion_tokens"] * pout) / 1e6
            batch += (uncached * bin_ + cached * bc + u["completion_tokens"] * bout) / 1e6
        stats = json.load(open(stats_path))
        assert abs(stats["batch_cost_usd"] - batch) < 1e-9, (stats, batch)
        assert abs(stats["batch_direct_cost_usd"] - direct) < 1e-9, (stats, direct)
        assert abs(stats["batch_saving_usd"] - (direct - batch)) < 1e-9, stats
        assert abs(stats["cost_usd"] - batch) < 1e-9, stats
        # Not the old fixed factor: 0.3 on one model, 1.0 on the other.
        assert abs(stats["batch_cost_usd"] - direct / 2) > 1e-6, stats
        assert [m.split("-2")[0] for m in stats["batch_rate_missing"]] == ["claude-haiku-4-5"], stats
        assert p.stderr.count("has no batch rate for") == 1, p.stderr
        assert "1 model at the standard rate" in p.stderr, p.stderr


@test
def test_a_model_the_table_lacks_is_unpriced_not_batch_priced():
    with tempfile.TemporaryDirectory() as d:
        inp, out = os.path.join(d, "in.jsonl"), os.path.join(d, "out.jsonl")
        prices = os.path.join(d, "prices.json")
        with open(prices, "w") as f:
            json.dump({"prices": {"gpt-4o": {"input": 1, "output": 1}}}, f)
        write_input(inp, 6)
        stats_path = os.path.join(d, "s.json")
        p = run([LLMRING, "batch", inp, "-o", out, "--via", "provider-batch", "--mock",
                 "--poll", "0.1", "--stats", stats_path], env=clean_env(LLMRING_PRICES=prices))
        assert p.returncode == 0, p.stderr
        stats = json.load(open(stats_path))
        assert stats["batch_cost_usd"] is None and stats["batch_saving_usd"] is None, stats
        assert stats["batch_rate_missing"] == [], stats
        assert len(stats["unpriced_models"]) == 2, stats
        assert "has no batch rate" not in p.stderr, p.stderr


@test
def test_a_rerun_after_the_end_submits_nothing():
    with tempfile.TemporaryDirectory() as d, Mock(os.path.join(d, "m"), "--batch-phase-ms", "50") as m:
        inp, out = os.path.join(d, "in.jsonl"), os.path.join(d, "out.jsonl")
        write_input(inp, 50)
        assert run(batch_args(inp, out, m.url)).returncode == 0
        p = run(batch_args(inp, out, m.url))
        assert p.returncode == 0, p.stderr
        assert "50 skipped" in p.stderr, p.stderr
        check_one_outcome_each(out, 50)
        check_never_twice(m, 50)


@test
def test_lines_split_by_the_part_limits():
    with tempfile.TemporaryDirectory() as d, Mock(os.path.join(d, "m"), "--batch-phase-ms", "50") as m:
        inp, out = os.path.join(d, "in.jsonl"), os.path.join(d, "out.jsonl")
        write_input(inp, 250, models=(OPENAI, "openai/gpt-4o", ANTHROPIC))
        p = run(batch_args(inp, out, m.url), env=clean_env(LLMRING_BATCH_MAX_LINES="40"))
        assert p.returncode == 0, p.stderr
        state = json.load(open(out + ".state.json"))
        parts = state["parts"]
        assert all(pt["lines"] <= 40 for pt in parts), parts
        # One model per part, and every line in exactly one part.
        assert sum(pt["lines"] for pt in parts) == 250
        assert len(parts) == 3 * 3, [(pt["model"], pt["lines"]) for pt in parts]
        check_one_outcome_each(out, 250)
        check_never_twice(m, 250)


@test
def test_embeddings_lines_go_in_their_own_part():
    with tempfile.TemporaryDirectory() as d, Mock(os.path.join(d, "m"), "--batch-phase-ms", "50") as m:
        inp, out = os.path.join(d, "in.jsonl"), os.path.join(d, "out.jsonl")
        with open(inp, "w") as f:
            for i in range(10):
                chat = i % 2 == 0
                body = ({"model": OPENAI, "messages": [{"role": "user", "content": "hi"}]} if chat
                        else {"model": "openai/text-embedding-3-small", "input": "text %d" % i})
                f.write(json.dumps({"custom_id": "r%d" % i, "method": "POST",
                                    "url": "/v1/chat/completions" if chat else "/v1/embeddings",
                                    "body": body}) + "\n")
        p = run(batch_args(inp, out, m.url))
        assert p.returncode == 0, p.stderr
        lines = {l["custom_id"]: l for l in check_one_outcome_each(out, 10)}
        assert all(lines["r%d" % i]["response"]["body"]["object"] == "list" for i in range(1, 10, 2))
        assert all(lines["r%d" % i]["response"]["body"]["object"] == "chat.completion"
                   for i in range(0, 10, 2))
        st = json.load(open(out + ".state.json"))
        assert sorted(pt["endpoint"] for pt in st["parts"]) == ["chat", "embeddings"], st


def part_statuses(out):
    try:
        return [pt["status"] for pt in json.load(open(out + ".state.json"))["parts"]]
    except (OSError, ValueError):
        return []


# When to kill: soon after the start (planning, or a resumed run's first
# calls), while a part is being created or is running at the provider, and
# after some part was merged while others were not (downloading, merging).
KILL_AT = [
    lambda st: True,
    lambda st: "creating" in st or ("planned" in st and "submitted" in st),
    lambda st: "submitted" in st,
    lambda st: "merged" in st and any(x != "merged" for x in st),
]


def kill_and_resume(d, mock, n, env, kills, restart_mock_at=None, extra=()):
    """Runs the batch and kills it with -9 at the moments of KILL_AT in
    turn (each a little later by a random delay) until `kills` kills
    landed or a run ended by itself; then runs it to its end. The mock may
    be restarted once on the way. Returns the kills and the part statuses
    seen at them."""
    inp, out = os.path.join(d, "in.jsonl"), os.path.join(d, "out.jsonl")
    rnd = random.Random(1234)
    killed, seen = 0, set()
    for k in range(4 * kills):
        want = KILL_AT[k % len(KILL_AT)]
        proc = subprocess.Popen(batch_args(inp, out, mock.url, "--quiet", *extra), env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(rnd.uniform(0.01, 0.1))
        deadline = time.time() + 60
        while proc.poll() is None and time.time() < deadline and not want(part_statuses(out)):
            time.sleep(0.005)
        time.sleep(rnd.uniform(0, 0.03))
        if proc.poll() is None:
            seen |= set(part_statuses(out)) or {"no state yet"}
            proc.send_signal(signal.SIGKILL)
            killed += 1
        proc.wait()
        err = proc.stderr.read()
        proc.stderr.close()
        assert proc.returncode in (0, -9), (proc.returncode, err)
        if restart_mock_at == k:
            mock.restart(*mock.args)
        if proc.returncode == 0 or killed == kills:
            break
    p = run(batch_args(inp, out, mock.url, *extra), env=env, timeout=300)
    assert p.returncode == 0, p.stderr
    print("      %d kills; part statuses seen at them: %s" % (killed, sorted(seen)))
    return out, killed, seen


@test
def test_120000_lines_killed_at_random_moments_one_outcome_each_nothing_twice():
    with tempfile.TemporaryDirectory() as d:
        n = 120000
        write_input(os.path.join(d, "in.jsonl"), n)
        with Mock(os.path.join(d, "m"), "--batch-phase-ms", "300") as m:
            env = clean_env(LLMRING_BATCH_MAX_LINES="10000")
            out, killed, seen = kill_and_resume(d, m, n, env, kills=12, restart_mock_at=5)
            # Kills landed while submitting, polling and merging.
            assert killed >= 8 and {"submitted", "merged"} <= seen, (killed, seen)
            lines = check_one_outcome_each(out, n)
            assert all(l["error"] is None for l in lines)
            check_never_twice(m, n)
            state = json.load(open(out + ".state.json"))
            assert len(state["parts"]) == 12, len(state["parts"])


@test
def test_many_small_parts_killed_while_creating_one_outcome_each_nothing_twice():
    # Many small parts: the kills land while they are being created.
    with tempfile.TemporaryDirectory() as d:
        n = 3000
        write_input(os.path.join(d, "in.jsonl"), n)
        with Mock(os.path.join(d, "m"), "--batch-phase-ms", "200") as m:
            env = clean_env(LLMRING_BATCH_MAX_LINES="25")
            out, killed, seen = kill_and_resume(d, m, n, env, kills=15)
            # Kills landed while parts were being created (the run ends soon
            # after: fewer kills land than asked for).
            assert killed >= 4 and ("creating" in seen or {"planned", "submitted"} <= seen), (
                killed, seen)
            check_one_outcome_each(out, n)
            check_never_twice(m, n)


@test
def test_a_part_left_creating_adopts_the_batch_its_create_made():
    # As a kill between the create's arrival and its answer being saved
    # leaves it: "creating" with no batch id. The re-run must find that
    # batch (OpenAI: by metadata; Anthropic: by time and request count).
    with tempfile.TemporaryDirectory() as d:
        n = 60
        inp, out = os.path.join(d, "in.jsonl"), os.path.join(d, "out.jsonl")
        write_input(inp, n)
        with Mock(os.path.join(d, "m"), "--batch-phase-ms", "2000") as m:
            proc = subprocess.Popen(batch_args(inp, out, m.url, "--quiet"), env=clean_env(),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            state_path = out + ".state.json"
            deadline = time.time() + 30
            st = None
            while time.time() < deadline:
                try:
                    st = json.load(open(state_path))
                    if all(pt["status"] == "submitted" for pt in st["parts"]):
                        break
                except (OSError, ValueError):
                    pass
                time.sleep(0.02)
            proc.kill()
            proc.wait()
            st = json.load(open(state_path))
            ids = sorted(pt["batch_id"] for pt in st["parts"])
            for pt in st["parts"]:
                pt["status"], pt["batch_id"], pt["remote"] = "creating", "", ""
            with open(state_path, "w") as f:
                json.dump(st, f)
            p = run(batch_args(inp, out, m.url))
            assert p.returncode == 0, p.stderr
            assert p.stderr.count("adopted") == 2, p.stderr
            st = json.load(open(state_path))
            assert sorted(pt["batch_id"] for pt in st["parts"]) == ids, (st, ids)
            check_one_outcome_each(out, n)
            check_never_twice(m, n)
            s = m.stats()
            assert s["openai_batches"] == 1 and s["anthropic_batches"] == 1, s


@test
def test_adoption_pages_through_more_batches_than_one_list_holds():
    # 130 one-line parts per provider: more batches than a list page (100).
    # Every OpenAI part and the oldest Anthropic one are left "creating";
    # finding their batches takes the lists' cursors (after, after_id).
    with tempfile.TemporaryDirectory() as d:
        n = 260
        inp, out = os.path.join(d, "in.jsonl"), os.path.join(d, "out.jsonl")
        write_input(inp, n)
        env = clean_env(LLMRING_BATCH_MAX_LINES="1")
        with Mock(os.path.join(d, "m"), "--batch-phase-ms", "3000") as m:
            proc = subprocess.Popen(batch_args(inp, out, m.url, "--quiet"), env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            state_path = out + ".state.json"
            deadline = time.time() + 60
            while time.time() < deadline:
                try:
                    st = json.load(open(state_path))
                    if len(st["parts"]) == n and all(pt["status"] == "submitted"
                                                     for pt in st["parts"]):
                        break
                except (OSError, ValueError):
                    pass
                time.sleep(0.02)
            proc.kill()
            proc.wait()
            st = json.load(open(state_path))
            assert len(st["parts"]) == n and all(pt["batch_id"] for pt in st["parts"]), st
            ids = sorted(pt["batch_id"] for pt in st["parts"])
            oldest_anthropic = min(pt["n"] for pt in st["parts"] if pt["api"] == "anthropic")
            for pt in st["parts"]:
                if pt["api"] == "openai" or pt["n"] == oldest_anthropic:
                    pt["status"], pt["batch_id"], pt["remote"] = "creating", "", ""
            with open(state_path, "w") as f:
                json.dump(st, f)
            p = run(batch_args(inp, out, m.url), env=env, timeout=240)
            assert p.returncode == 0, p.stderr
            assert p.stderr.count("adopted") == 131, p.stderr.count("adopted")
            st = json.load(open(state_path))
            assert sorted(pt["batch_id"] for pt in st["parts"]) == ids
            check_one_outcome_each(out, n)
            check_never_twice(m, n)
            s = m.stats()
            assert s["openai_batches"] == 130 and s["anthropic_batches"] == 130, s


# ---- faults ------------------------------------------------------------------

@test
def test_expired_lines_become_batch_expired_and_retry_errors_sends_them_again():
    with tempfile.TemporaryDirectory() as d:
        n = 400
        inp, out = os.path.join(d, "in.jsonl"), os.path.join(d, "out.jsonl")
        write_input(inp, n)
        with Mock(os.path.join(d, "m"), "--batch-phase-ms", "50", "--batch-fault", "expire:0.3") as m:
            p = run(batch_args(inp, out, m.url))
            assert p.returncode == 1, p.stderr
            lines = check_one_outcome_each(out, n)
            expired = {l["custom_id"] for l in lines if l["error"]}
            assert expired and all(l["error"]["code"] == "batch_expired"
                                   for l in lines if l["error"]), lines[:3]
            assert 0.15 * n < len(expired) < 0.45 * n, len(expired)
            m.restart("--batch-phase-ms", "50")  # no more expiry
            p = run(batch_args(inp, out, m.url, "--retry-errors"))
            assert p.returncode == 0, p.stderr
            lines = check_one_outcome_each(out, n)
            assert all(l["error"] is None for l in lines)
            subs = m.submits()
            # The expired ones twice (asked for), every other once.
            assert all(subs["r%d" % i] == (2 if "r%d" % i in expired else 1)
                       for i in range(n)), subs
            state = json.load(open(out + ".state.json"))
            assert len(state["parts"]) == 4, state["parts"]  # 2 + 2 for the retry


@test
def test_a_failed_batch_gives_its_lines_batch_failed():
    with tempfile.TemporaryDirectory() as d:
        n = 100
        inp, out = os.path.join(d, "in.jsonl"), os.path.join(d, "out.jsonl")
        write_input(inp, n, models=(OPENAI,))
        with Mock(os.path.join(d, "m"), "--batch-phase-ms", "50", "--batch-fault", "fail:1") as m:
            p = run(batch_args(inp, out, m.url))
            assert p.returncode == 1, p.stderr
            lines = check_one_outcome_each(out, n)
            failed = [l for l in lines if l["error"]]
            assert failed and all(l["error"]["code"] == "batch_failed" for l in failed), failed[0]
            assert "batch_failed" in failed[0]["error"]["message"], failed[0]


@test
def test_a_429_on_create_is_waited_out_and_nothing_is_sent_twice():
    with tempfile.TemporaryDirectory() as d:
        n = 200
        inp, out = os.path.join(d, "in.jsonl"), os.path.join(d, "out.jsonl")
        write_input(inp, n)
        with Mock(os.path.join(d, "m"), "--batch-phase-ms", "50", "--batch-fault", "429:0.5") as m:
            p = run(batch_args(inp, out, m.url), env=clean_env(LLMRING_BATCH_MAX_LINES="20"))
            assert p.returncode == 0, p.stderr
            check_one_outcome_each(out, n)
            check_never_twice(m, n)


@test
def test_a_cut_download_is_resumed():
    with tempfile.TemporaryDirectory() as d:
        n = 300
        inp, out = os.path.join(d, "in.jsonl"), os.path.join(d, "out.jsonl")
        write_input(inp, n)
        with Mock(os.path.join(d, "m"), "--batch-phase-ms", "50", "--batch-fault", "cut:1") as m:
            p = run(batch_args(inp, out, m.url))
            assert p.returncode == 0, p.stderr
            # Both providers' results were cut once and resumed with Range.
            assert p.stderr.count("resuming the download") >= 2, p.stderr
            lines = check_one_outcome_each(out, n)
            assert all(l["error"] is None for l in lines)
            # A merged part's files are removed.
            assert os.listdir(out + ".state.d") == [], os.listdir(out + ".state.d")


@test
def test_cancel_keeps_partial_results_and_cancels_the_rest():
    with tempfile.TemporaryDirectory() as d:
        n = 200
        inp, out = os.path.join(d, "in.jsonl"), os.path.join(d, "out.jsonl")
        write_input(inp, n)
        with Mock(os.path.join(d, "m"), "--batch-phase-ms", "3000") as m:
            proc = subprocess.Popen(batch_args(inp, out, m.url, "--quiet"), env=clean_env(),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            state_path = out + ".state.json"
            deadline = time.time() + 30
            while time.time() < deadline:
                try:
                    st = json.load(open(state_path))
                    if all(pt["status"] == "submitted" for pt in st["parts"]):
                        break
                except (OSError, ValueError):
                    pass
                time.sleep(0.05)
            proc.kill()
            proc.wait()
            # Sending them directly now would send them twice: refused.
            p = run([LLMRING, "batch", inp, "-o", out, "--base-url", m.url])
            assert p.returncode == 2 and "still running" in p.stderr, p.stderr
            p = run(batch_args(inp, out, m.url, "--cancel"))
            assert p.returncode == 1, p.stderr
            lines = check_one_outcome_each(out, n)
            codes = {l["error"]["code"] if l["error"] else None for l in lines}
            assert "batch_cancelled" in codes and codes <= {None, "batch_cancelled"}, codes
            st = json.load(open(state_path))
            assert all(pt["status"] == "merged" for pt in st["parts"]), st
            remote = {pt["remote"] for pt in st["parts"]}
            assert remote <= {"cancelled", "ended"}, remote
            assert m.stats()["max_submits"] == 1


@test
def test_cancel_before_submitting_cancels_every_line():
    with tempfile.TemporaryDirectory() as d:
        n = 30
        inp, out = os.path.join(d, "in.jsonl"), os.path.join(d, "out.jsonl")
        write_input(inp, n)
        with Mock(os.path.join(d, "m"), "--batch-fault", "429:1") as m:
            # Every create refused: kill it while it waits, then cancel.
            proc = subprocess.Popen(batch_args(inp, out, m.url, "--quiet"), env=clean_env(),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.0)
            proc.kill()
            proc.wait()
            p = run(batch_args(inp, out, m.url, "--cancel"))
            assert p.returncode == 1, p.stderr
            lines = check_one_outcome_each(out, n)
            assert all(l["error"]["code"] == "batch_cancelled" for l in lines), lines[0]
            assert m.stats()["batch_lines_submitted"] == 0


@test
def test_a_batch_the_provider_no_longer_knows_fails_its_lines_and_is_retried():
    # The in-process mock forgets its batches when the run ends: a re-run
    # of a killed --mock run polls batches that are gone (404).
    with tempfile.TemporaryDirectory() as d:
        n = 40
        inp, out = os.path.join(d, "in.jsonl"), os.path.join(d, "out.jsonl")
        write_input(inp, n)
        args = [LLMRING, "batch", inp, "-o", out, "--via", "provider-batch", "--mock",
                "--poll", "0.1"]
        proc = subprocess.Popen(args + ["--quiet"], env=clean_env(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                st = json.load(open(out + ".state.json"))
                if all(pt["status"] == "submitted" for pt in st["parts"]):
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.02)
        proc.kill()
        proc.wait()
        p = run(args)
        assert p.returncode == 1, p.stderr
        lines = check_one_outcome_each(out, n)
        assert all(l["error"]["code"] == "batch_failed" and "404" in l["error"]["message"]
                   for l in lines), lines[0]
        p = run(args + ["--retry-errors"])
        assert p.returncode == 0, p.stderr
        assert all(l["error"] is None for l in check_one_outcome_each(out, n))


@test
def test_merge_skips_ids_already_in_the_output_and_ids_not_in_the_part():
    # A provider's results never add lines: a part's downloaded results
    # are replaced by one of its own lines, one line twice, and a stranger.
    with tempfile.TemporaryDirectory() as d:
        n = 10
        inp, out = os.path.join(d, "in.jsonl"), os.path.join(d, "out.jsonl")
        write_input(inp, n, models=(OPENAI,))
        with Mock(os.path.join(d, "m"), "--batch-phase-ms", "60000") as m:
            proc = subprocess.Popen(batch_args(inp, out, m.url, "--quiet"), env=clean_env(),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            state_path = out + ".state.json"
            deadline = time.time() + 30
            while time.time() < deadline:
                try:
                    st = json.load(open(state_path))
                    if st["parts"] and st["parts"][0]["status"] == "submitted":
                        break
                except (OSError, ValueError):
                    pass
                time.sleep(0.02)
            proc.kill()
            proc.wait()
        st = json.load(open(state_path))
        pt = st["parts"][0]
        pt.update(status="ended", remote="completed", out_done=True, err_done=True)
        with open(state_path, "w") as f:
            json.dump(st, f)
        line = lambda cid: json.dumps({"id": "x", "custom_id": cid, "error": None,
                                       "response": {"status_code": 200, "request_id": "q",
                                                    "body": {"object": "chat.completion"}}})
        with open(os.path.join(out + ".state.d", "part-%d.out.jsonl" % pt["n"]), "w") as f:
            f.write("\n".join([line("r3"), line("stranger"), line("r3"), line("r5")]) + "\n")
        # As a kill between appending r5 and saving "merged" leaves it.
        with open(out, "a") as f:
            f.write(line("r5") + "\n")
        # Nothing is left to ask a server (the in-process mock stands by).
        p = run([LLMRING, "batch", inp, "-o", out, "--via", "provider-batch", "--mock"])
        assert p.returncode == 1, p.stderr
        assert "named a custom_id not in the part" in p.stderr, p.stderr
        lines = {l["custom_id"]: l for l in check_one_outcome_each(out, n)}
        assert lines["r3"]["error"] is None and lines["r5"]["error"] is None
        assert all(lines["r%d" % i]["error"]["code"] == "batch_expired"
                   for i in range(n) if i not in (3, 5))


# ---- refusals ----------------------------------------------------------------

@test
def test_flags_that_do_not_go_together_are_refused():
    with tempfile.TemporaryDirectory() as d:
        inp, out = os.path.join(d, "in.jsonl"), os.path.join(d, "out.jsonl")
        write_input(inp, 2)
        cases = [
            (["--via", "sideways"], "--via takes direct or provider-batch"),
            (["--poll", "1"], "--poll works with --via provider-batch only"),
            (["--cancel"], "--cancel works with --via provider-batch only"),
            (["--via", "provider-batch", "--cancel", "--retry-errors"], "exclude each other"),
        ]
        for extra, words in cases:
            p = run([LLMRING, "batch", inp, "-o", out, "--mock"] + extra)
            assert p.returncode == 2 and words in p.stderr, (extra, p.stderr)
            assert not os.path.exists(out), extra
            assert not os.path.exists(os.path.join(d, "c.db")), extra


@test
def test_a_corrupt_state_file_is_refused_with_a_clear_message():
    with tempfile.TemporaryDirectory() as d:
        inp, out = os.path.join(d, "in.jsonl"), os.path.join(d, "out.jsonl")
        write_input(inp, 4)
        with open(out + ".state.json", "w") as f:
            f.write('{"llmring_state":1,"run_id":"x", "parts": [')
        p = run([LLMRING, "batch", inp, "-o", out, "--via", "provider-batch", "--mock"])
        assert p.returncode == 2, p.stderr
        assert "refusing the state file" in p.stderr and "corrupt" in p.stderr, p.stderr
        assert not os.path.exists(out), "a refused run made the output"


@test
def test_an_input_that_is_the_state_file_is_refused_as_that():
    """X.state.json as the input of -o X (by name, or a hard link to it) is named for what
    it is, not called corrupt, and is left as it was; so is --stats naming it."""
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "X")
        inp = out + ".state.json"
        write_input(inp, 4)
        before = open(inp).read()
        link = os.path.join(d, "elsewhere.jsonl")
        os.link(inp, link)
        for args in ([inp, "-o", out, "--via", "provider-batch"],
                     [link, "-o", out, "--via", "provider-batch"],
                     [inp, "-o", out]):
            p = run([LLMRING, "batch"] + args + ["--mock"])
            assert p.returncode == 2, (args, p.stderr)
            assert "the input is the provider batches' state file" in p.stderr, (args, p.stderr)
            assert "corrupt" not in p.stderr, (args, p.stderr)
            assert not os.path.exists(out), args
            assert open(inp).read() == before, args
        # --stats naming the state file (absent, or there) would overwrite it.
        other = os.path.join(d, "in.jsonl")
        write_input(other, 4)
        os.unlink(inp)
        for exists in (False, True):
            if exists:
                open(out + ".state.json", "a").close()
            p = run([LLMRING, "batch", other, "-o", out, "--via", "provider-batch", "--mock",
                     "--stats", out + ".state.json"])
            assert p.returncode == 2, p.stderr
            assert "the stats file (--stats) is the provider batches' state file" in p.stderr, \
                p.stderr
            assert not os.path.exists(out)


@test
def test_state_files_broken_in_many_ways_are_refused_never_crash():
    with tempfile.TemporaryDirectory() as d:
        inp, out = os.path.join(d, "in.jsonl"), os.path.join(d, "out.jsonl")
        write_input(inp, 6)
        p = run([LLMRING, "batch", inp, "-o", out, "--via", "provider-batch", "--mock",
                 "--poll", "0.1"])
        assert p.returncode == 0, p.stderr
        good = open(out + ".state.json").read()
        st = json.loads(good)

        def variant(fn):
            v = json.loads(good)
            fn(v)
            return json.dumps(v)
        part = lambda fn: variant(lambda v: fn(v["parts"][0]))
        broken = [
            "", "\0\0\0", good[:len(good) // 2], "[]", "null", '{"llmring_state":2}',
            variant(lambda v: v.update(llmring_state="1")),
            variant(lambda v: v.update(run_id=7)),
            variant(lambda v: v.update(parts={})),
            part(lambda pt: pt.update(status="dancing")),
            part(lambda pt: pt.update(api="gemini")),
            part(lambda pt: pt.update(n=0)),
            part(lambda pt: pt.update(lines=pt["lines"] + 1)),
            part(lambda pt: pt.update(ranges=[[3, 1]])),
            part(lambda pt: pt.update(ranges=[[1, 2], [2, 3]])),
            part(lambda pt: pt.update(ranges=[[1, 99999999999999999999]])),
            part(lambda pt: pt.update(batch_id="x" * 500)),
            part(lambda pt: pt.update(out_done="yes")),
            part(lambda pt: pt.pop("model")),
            variant(lambda v: v["parts"].append(v["parts"][0])),  # a repeated part number
        ]
        for text in broken:
            with open(out + ".state.json", "w") as f:
                f.write(text)
            p = run([LLMRING, "batch", inp, "-o", out, "--via", "provider-batch", "--mock"])
            assert p.returncode == 2, (text[:200], p.returncode, p.stderr)
            assert "refusing the state file" in p.stderr, (text[:200], p.stderr)
        assert len(st["parts"]) == 2


@test
def test_the_state_of_another_input_is_refused():
    with tempfile.TemporaryDirectory() as d:
        inp, out = os.path.join(d, "in.jsonl"), os.path.join(d, "out.jsonl")
        write_input(inp, 6)
        p = run([LLMRING, "batch", inp, "-o", out, "--via", "provider-batch", "--mock",
                 "--poll", "0.1"])
        assert p.returncode == 0, p.stderr
        before = open(out).read()
        write_input(inp, 7)
        p = run([LLMRING, "batch", inp, "-o", out, "--via", "provider-batch", "--mock"])
        assert p.returncode == 2, p.stderr
        assert "belongs to another input" in p.stderr, p.stderr
        assert open(out).read() == before


@test
def test_anthropic_custom_ids_it_cannot_take_are_error_lines_before_submitting():
    with tempfile.TemporaryDirectory() as d, Mock(os.path.join(d, "m"), "--batch-phase-ms", "50") as m:
        inp, out = os.path.join(d, "in.jsonl"), os.path.join(d, "out.jsonl")
        write_input(inp, 4, models=(ANTHROPIC,), ids=lambda i: "bad.id/%d" % i if i == 2 else "r%d" % i)
        p = run(batch_args(inp, out, m.url))
        assert p.returncode == 1, p.stderr
        lines = {l["custom_id"]: l for l in read_output(out)}
        assert lines["bad.id/2"]["error"]["code"] == "invalid_input", lines
        assert "custom_id" in lines["bad.id/2"]["error"]["message"]
        assert all(lines["r%d" % i]["error"] is None for i in (0, 1, 3))
        assert "bad.id/2" not in m.submits()
        # A re-run skips it (it has its outcome) and sends nothing.
        p = run(batch_args(inp, out, m.url))
        assert p.returncode == 1 and len(read_output(out)) == 4, p.stderr


@test
def test_usage_errors():
    for args, want in [(["--poll", "1"], "--via provider-batch only"),
                       (["--cancel"], "--via provider-batch only"),
                       (["--via", "carrier-pigeon"], "--via takes direct or provider-batch"),
                       (["--via", "provider-batch", "--cancel", "--retry-errors"], "exclude")]:
        p = run([LLMRING, "batch", "in.jsonl", "-o", "out.jsonl", "--mock"] + args)
        assert p.returncode == 2 and want in p.stderr, (args, p.stderr)


# ---- providers without a batch API -------------------------------------------

class NoBatches(http.server.BaseHTTPRequestHandler):
    """An OpenAI-compatible server without /v1/batches or /v1/files."""

    def log_message(self, *a):
        pass

    def reply(self, status, obj):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.reply(404, {"error": {"message": "no such route", "type": "invalid_request_error"}})

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        self.rfile.read(n)
        if self.path.endswith("/chat/completions"):
            self.reply(200, {"id": "c1", "object": "chat.completion", "model": "m",
                             "choices": [{"index": 0, "finish_reason": "stop",
                                          "message": {"role": "assistant", "content": "hi"}}],
                             "usage": {"prompt_tokens": 1, "completion_tokens": 1,
                                       "total_tokens": 2}})
        else:
            self.reply(404, {"error": {"message": "no such route", "type": "invalid_request_error"}})


class CachedUsageBatches(NoBatches):
    """The least of OpenAI's Files + Batches: a batch completes at once, and every output
    line reports 100 prompt tokens of which 40 were cache reads, and 10 completion tokens."""
    uploaded = []

    def do_GET(self):
        if self.path.split("?")[0].endswith("/batches"):
            self.reply(200, {"object": "list", "data": [], "has_more": False})
        elif self.path.endswith("/files/file-out/content"):
            lines = "".join(json.dumps({
                "id": "batch_req_%d" % i, "custom_id": cid, "error": None,
                "response": {"status_code": 200, "request_id": "req_%d" % i, "body": {
                    "id": "c%d" % i, "object": "chat.completion", "model": "gpt-4o-mini",
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": "hi"}}],
                    "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110,
                              "prompt_tokens_details": {"cached_tokens": 40}}}}}) + "\n"
                for i, cid in enumerate(self.uploaded)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/jsonl")
            self.send_header("Content-Length", str(len(lines)))
            self.end_headers()
            self.wfile.write(lines)
        else:
            super().do_GET()

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
        if self.path.endswith("/files"):
            for line in body.splitlines():
                if line.startswith("{") and "custom_id" in line:
                    CachedUsageBatches.uploaded.append(json.loads(line)["custom_id"])
            self.reply(200, {"id": "file-in", "object": "file", "purpose": "batch"})
        elif self.path.endswith("/batches"):
            n = len(self.uploaded)
            self.reply(200, {"id": "batch_1", "object": "batch", "status": "completed",
                             "output_file_id": "file-out", "error_file_id": None,
                             "request_counts": {"total": n, "completed": n, "failed": 0}})
        else:
            self.reply(404, {"error": {"message": "no such route", "type": "invalid_request_error"}})


@test
def test_cache_reads_in_batch_results_are_priced_at_the_batch_cached_rate():
    CachedUsageBatches.uploaded = []
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), CachedUsageBatches)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        with tempfile.TemporaryDirectory() as d:
            inp, out = os.path.join(d, "in.jsonl"), os.path.join(d, "out.jsonl")
            prices = os.path.join(d, "prices.json")
            with open(prices, "w") as f:
                json.dump({"prices": {"gpt-4o-mini": {
                    "input": 1000, "cached_input": 100, "output": 2000,
                    "batch_input": 500, "batch_cached_input": 20, "batch_output": 1000}}}, f)
            write_input(inp, 5, models=(OPENAI,))
            stats_path = os.path.join(d, "s.json")
            p = run(batch_args(inp, out, "http://127.0.0.1:%d/v1" % srv.server_port, "--stats",
                               stats_path), env=clean_env(LLMRING_PRICES=prices,
                                                          OPENAI_API_KEY="sk-test"))
            assert p.returncode == 0, p.stderr
            check_one_outcome_each(out, 5)
            stats = json.load(open(stats_path))
            # Per line: 60 uncached + 40 cached prompt tokens and 10 completion tokens.
            batch = 5 * (60 * 500 + 40 * 20 + 10 * 1000) / 1e6
            direct = 5 * (60 * 1000 + 40 * 100 + 10 * 2000) / 1e6
            assert abs(stats["batch_cost_usd"] - batch) < 1e-9, (stats, batch)
            assert abs(stats["batch_direct_cost_usd"] - direct) < 1e-9, (stats, direct)
            assert abs(stats["batch_saving_usd"] - (direct - batch)) < 1e-9, stats
    finally:
        srv.shutdown()
        srv.server_close()


@test
def test_a_server_without_batches_gets_the_lines_directly_with_a_notice():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NoBatches)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        with tempfile.TemporaryDirectory() as d:
            inp, out = os.path.join(d, "in.jsonl"), os.path.join(d, "out.jsonl")
            write_input(inp, 10, models=("meta-llama/Llama-3.1-8B-Instruct",))
            p = run(batch_args(inp, out, "http://127.0.0.1:%d/v1" % srv.server_port))
            assert p.returncode == 0, p.stderr
            assert "sent directly" in p.stderr and "no batch API" in p.stderr, p.stderr
            lines = check_one_outcome_each(out, 10)
            assert all(l["error"] is None for l in lines)
    finally:
        srv.shutdown()
        srv.server_close()


@test
def test_ollama_lines_go_directly_and_the_rest_in_batches():
    with tempfile.TemporaryDirectory() as d, Mock(os.path.join(d, "m"), "--batch-phase-ms", "50") as m:
        inp, out = os.path.join(d, "in.jsonl"), os.path.join(d, "out.jsonl")
        write_input(inp, 30, models=(OPENAI, "ollama/qwen3:4b", ANTHROPIC))
        p = run(batch_args(inp, out, m.url))
        assert p.returncode == 0, p.stderr
        assert "ollama lines are sent directly" in p.stderr, p.stderr
        check_one_outcome_each(out, 30)
        assert m.stats()["batch_lines_submitted"] == 20


# ---- the response cache (--cache) --------------------------------------------

def direct_args(inp, out, base, *extra):
    return [LLMRING, "batch", inp, "-o", out, "--base-url", base] + list(extra)


def write_half(d, n):
    """in.jsonl of n lines (OpenAI and Anthropic by turns) and half.jsonl, the
    same bytes of the lines i % 4 < 2 (half of each provider's); the ids of
    the half."""
    inp, half = os.path.join(d, "in.jsonl"), os.path.join(d, "half.jsonl")
    write_input(inp, n)
    with open(inp) as f, open(half, "w") as h:
        for i, line in enumerate(f):
            if i % 4 < 2:
                h.write(line)
    return inp, half, {"r%d" % i for i in range(n) if i % 4 < 2}


def cached_ids(lines):
    return {l["custom_id"] for l in lines if l.get("cached") is True}


def submitted(mock):
    """custom_id -> times submitted in a batch (absent: never)."""
    return mock.submits()


@test
def test_cache_half_filled_directly_submits_only_the_misses_and_fills_the_rest():
    with tempfile.TemporaryDirectory() as d, Mock(os.path.join(d, "m"), "--batch-phase-ms", "50") as m:
        n = 40
        inp, half, half_ids = write_half(d, n)
        cache = os.path.join(d, "c.db")
        p = run(direct_args(half, os.path.join(d, "direct.jsonl"), m.url, "--cache", cache))
        assert p.returncode == 0, p.stderr
        direct = {l["custom_id"]: l for l in read_output(os.path.join(d, "direct.jsonl"))}
        # Half the lines hit (answered as a direct run answers hits), the rest
        # go into the providers' batches, each once; every line has one outcome.
        out, stats = os.path.join(d, "out.jsonl"), os.path.join(d, "s.json")
        p = run(batch_args(inp, out, m.url, "--cache", cache, "--stats", stats))
        assert p.returncode == 0, p.stderr
        lines = check_one_outcome_each(out, n)
        assert all(l["error"] is None for l in lines), lines
        assert cached_ids(lines) == half_ids
        for l in lines:
            if l["custom_id"] in half_ids:
                assert l["response"]["body"] == direct[l["custom_id"]]["response"]["body"], l
        subs = submitted(m)
        assert set(subs) == {"r%d" % i for i in range(n)} - half_ids, sorted(subs)
        assert set(subs.values()) == {1}, subs
        st = json.load(open(stats))
        assert st["cache_hits"] == n // 2 and st["cost_saved_usd"] > 0, st
        assert st["batch_lines_merged"] == n // 2 and st["batch_cache_stores"] == n // 2, st
        assert st["requests"] == n and st["succeeded"] == n, st
        assert "cache: %d hits" % (n // 2) in p.stderr, p.stderr
        assert {pt["api"] for pt in json.load(open(out + ".state.json"))["parts"]} == {
            "openai", "anthropic"}
        # A second provider-batch run: every line a hit, nothing submitted.
        out2 = os.path.join(d, "out2.jsonl")
        p = run(batch_args(inp, out2, m.url, "--cache", cache))
        assert p.returncode == 0, p.stderr
        assert cached_ids(check_one_outcome_each(out2, n)) == {"r%d" % i for i in range(n)}
        assert submitted(m) == subs
        assert m.stats()["batch_lines_submitted"] == n // 2
        # And a direct run finds the batches' results too: every line a hit.
        out3 = os.path.join(d, "out3.jsonl")
        p = run(direct_args(inp, out3, m.url, "--cache", cache))
        assert p.returncode == 0, p.stderr
        assert cached_ids(check_one_outcome_each(out3, n)) == {"r%d" % i for i in range(n)}
        assert "cache: %d hits" % n in p.stderr, p.stderr
        by_id = {l["custom_id"]: l for l in read_output(out3)}
        for l in lines:
            if l["custom_id"] not in half_ids:
                assert by_id[l["custom_id"]]["response"]["body"] == l["response"]["body"], l


@test
def test_cache_modes_with_provider_batches():
    with tempfile.TemporaryDirectory() as d, Mock(os.path.join(d, "m"), "--batch-phase-ms", "50") as m:
        n = 24
        inp, half, half_ids = write_half(d, n)
        others = {"r%d" % i for i in range(n)} - half_ids
        cache = os.path.join(d, "c.db")
        assert run(direct_args(half, os.path.join(d, "direct.jsonl"), m.url,
                               "--cache", cache)).returncode == 0
        # read: hits answer, nothing is stored (the misses miss again later).
        out = os.path.join(d, "read.jsonl")
        p = run(batch_args(inp, out, m.url, "--cache", cache, "--cache-mode", "read"))
        assert p.returncode == 0, p.stderr
        assert cached_ids(check_one_outcome_each(out, n)) == half_ids
        assert set(submitted(m)) == others
        out = os.path.join(d, "again.jsonl")
        p = run(batch_args(inp, out, m.url, "--cache", cache))
        assert p.returncode == 0, p.stderr
        assert cached_ids(check_one_outcome_each(out, n)) == half_ids
        assert set(submitted(m)) == others and set(submitted(m).values()) == {2}
        # write: nothing is looked up (every line submitted), every result stored.
        fresh = os.path.join(d, "fresh.db")
        assert run(direct_args(half, os.path.join(d, "direct2.jsonl"), m.url,
                               "--cache", fresh)).returncode == 0
        out = os.path.join(d, "write.jsonl")
        p = run(batch_args(inp, out, m.url, "--cache", fresh, "--cache-mode", "write"))
        assert p.returncode == 0, p.stderr
        assert cached_ids(check_one_outcome_each(out, n)) == set()
        subs = submitted(m)
        assert all(subs[i] == 1 for i in half_ids) and all(subs[i] == 3 for i in others), subs
        out = os.path.join(d, "after-write.jsonl")
        p = run(batch_args(inp, out, m.url, "--cache", fresh, "--cache-mode", "read"))
        assert p.returncode == 0, p.stderr
        assert cached_ids(check_one_outcome_each(out, n)) == {"r%d" % i for i in range(n)}
        assert submitted(m) == subs
        # off: as without --cache.
        out = os.path.join(d, "off.jsonl")
        p = run(batch_args(inp, out, m.url, "--cache", fresh, "--cache-mode", "off"))
        assert p.returncode == 0, p.stderr
        assert cached_ids(check_one_outcome_each(out, n)) == set()
        assert all(v == submitted(m)[k] - 1 for k, v in subs.items())


@test
def test_cache_with_a_run_killed_at_random_moments_one_outcome_each_nothing_twice():
    with tempfile.TemporaryDirectory() as d:
        n = 3000
        inp, half, half_ids = write_half(d, n)
        cache = os.path.join(d, "c.db")
        with Mock(os.path.join(d, "m"), "--batch-phase-ms", "200") as m:
            assert run(direct_args(half, os.path.join(d, "direct.jsonl"), m.url,
                                   "--cache", cache)).returncode == 0
            env = clean_env(LLMRING_BATCH_MAX_LINES="25")
            out, killed, seen = kill_and_resume(d, m, n, env, kills=12, extra=("--cache", cache))
            assert killed >= 4 and "merged" in seen, (killed, seen)
            lines = check_one_outcome_each(out, n)
            assert all(l["error"] is None for l in lines)
            # The cached half was never batched; the rest exactly once.
            assert cached_ids(lines) == half_ids
            subs = submitted(m)
            assert set(subs) == {"r%d" % i for i in range(n)} - half_ids
            assert set(subs.values()) == {1}, subs
            # Every merged result is in the cache, however the kills fell.
            p = run(direct_args(inp, os.path.join(d, "all.jsonl"), m.url, "--cache", cache))
            assert p.returncode == 0, p.stderr
            assert cached_ids(check_one_outcome_each(os.path.join(d, "all.jsonl"), n)) == {
                "r%d" % i for i in range(n)}


@test
def test_a_leftover_keys_file_is_never_read_as_a_new_parts():
    """A run killed after writing part-1.keys but before saving its state
    leaves them; a run without --cache that plans a part 1 of its own must
    not leave them to be read as its keys by a later --cache run."""
    with tempfile.TemporaryDirectory() as d, Mock(os.path.join(d, "m"), "--batch-phase-ms", "1500") as m:
        inp, out = os.path.join(d, "in.jsonl"), os.path.join(d, "out.jsonl")
        write_input(inp, 6, models=(OPENAI,))
        os.makedirs(out + ".state.d")
        keys = os.path.join(out + ".state.d", "part-1.keys")
        with open(keys, "w") as f:
            f.write(("ab" * 32 + " openai\n") * 6)
        proc = subprocess.Popen(batch_args(inp, out, m.url, "--quiet"), env=clean_env(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 30
        while time.time() < deadline and "submitted" not in part_statuses(out):
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
        assert "submitted" in part_statuses(out)
        assert not os.path.exists(keys)
        # The --cache run that merges it stores nothing (no keys), and works.
        p = run(batch_args(inp, out, m.url, "--cache", os.path.join(d, "c.db"),
                           "--stats", os.path.join(d, "s.json")))
        assert p.returncode == 0, p.stderr
        check_one_outcome_each(out, 6)
        assert json.load(open(os.path.join(d, "s.json")))["batch_cache_stores"] == 0


# ---- runner ------------------------------------------------------------------

def main():
    global LLMRING
    if len(sys.argv) != 2:
        print("usage: test_cli_provider_batch.py PATH/TO/llmring", file=sys.stderr)
        return 2
    LLMRING = os.path.abspath(sys.argv[1])
    only = os.environ.get("TEST_ONLY")
    failed, ran = [], 0
    for fn in TESTS:
        if only and only not in fn.__name__:
            continue
        ran += 1
        start = time.time()
        try:
            fn()
            print("ok    %-78s %.2fs" % (fn.__name__, time.time() - start), flush=True)
        except Exception:
            failed.append(fn.__name__)
            print("FAIL  %s" % fn.__name__, flush=True)
            traceback.print_exc()
    print("%d tests, %d passed, %d failed%s" % (ran, ran - len(failed), len(failed),
          (": " + ", ".join(failed)) if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
