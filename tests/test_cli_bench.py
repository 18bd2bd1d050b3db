#!/usr/bin/env python3
"""End-to-end tests of `llmring bench` against `llmring mock` (its own
process) and the built-in mock: flags and their refusals, the closed and
open loops, the figures against what the mock was told, warm-up, the
schedule (seeded, vLLM's rescaling), coordinated omission, errors by code,
--json in both formats, --requests-out, the datasets.

usage: test_cli_bench.py PATH/TO/llmring

Timing assertions are lower bounds and generous upper ones: the figures'
accuracy is a benchmark (docs/benchmarks.md), not a test.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_cli_batch as base  # noqa: E402
from test_cli_batch import Certs, MockProcess, Tmp, https_base  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402

TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


def run(args, **kw):
    return base.run(["bench"] + args, **kw)


def bench_json(args, path, expect_rc=0, fmt=None, **kw):
    extra = ["--json", path] + (["--format", fmt] if fmt else [])
    p = run(args + extra + ["--quiet"], **kw)
    ok = expect_rc if isinstance(expect_rc, tuple) else (expect_rc,)
    with open(path) as f:
        r = json.load(f) if p.returncode in ok + (3,) else None
    # Status 3 is "the client lagged" (a loaded machine); a test about other
    # figures takes it when the report says so, and checks the rest.
    lagged = p.returncode == 3 and isinstance(r, dict) and r.get("client_lagged") is True
    assert p.returncode in ok or lagged, (p.returncode, p.stdout, p.stderr)
    return r, p


# ---- flags -----------------------------------------------------------------------------

@test
def refusals_name_the_problem():
    cases = [
        (["--mock"], "--model is needed"),
        (["--model", "m", "--concurrency", "2"], "--base-url URL (or --mock)"),
        (["--mock", "--model", "m", "--requests", "5", "--duration", "1", "--concurrency", "1"],
         "not both"),
        (["--mock", "--model", "m"], "give --concurrency N"),
        (["--mock", "--model", "m", "--concurrency", "1", "--burstiness", "2"], "give --rate too"),
        (["--mock", "--model", "m", "--concurrency", "1", "--goodput", "ttft"], "NAME:MS"),
        (["--mock", "--model", "m", "--concurrency", "1", "--goodput", "tbt:5"], "ttft, tpot"),
        (["--mock", "--model", "m", "--concurrency", "1", "--percentiles", "50,101"], "0 to 100"),
        (["--mock", "--model", "m", "--concurrency", "1", "--dataset", "csv:x"], "random, sharegpt"),
        (["--mock", "--model", "m", "--concurrency", "1", "--format", "yaml"], "llmring or vllm"),
        (["--mock", "--model", "m", "--concurrency", "1", "--requests", "ten"], "--requests"),
        (["--mock", "--model", "m", "--concurrency", "1", "--rate", "-3"], "--rate"),
        (["--mock", "--model", "m", "--concurrency", "1", "--endpoint", "embeddings"],
         "chat or completions"),
        (["--mock", "--model", "m", "--concurrency", "1", "--endpoint", "completions",
          "--dataset", "jsonl:x"], "holds chat bodies"),
        (["--mock", "--model", "m", "--concurrency", "1", "--wat"], "unexpected argument"),
        (["--mock", "--model", "m", "--concurrency", "1", "--random-range-ratio", "1"],
         "up to (not including) 1"),
        (["--mock", "--model", "m", "--concurrency", "1", "--random-range-ratio", "-0.1"],
         "up to (not including) 1"),
        (["--mock", "--model", "m", "--concurrency", "1", "--dataset", "jsonl:x",
          "--random-range-ratio", "0.5"], "own lengths"),
        (["--mock", "--model", "m", "--concurrency", "1", "--dataset", "jsonl:/nonexistent/x"],
         "cannot open /nonexistent/x"),
    ]
    for args, words in cases:
        p = run(args)
        assert p.returncode == 2 and words in p.stderr, (args, p.stderr)
    p = run(["--help"])
    assert p.returncode == 0 and "--burstiness" in p.stdout and "--goodput" in p.stdout
    p = base.run(["help", "bench"])
    assert p.returncode == 0 and "coordinated" in p.stdout


# ---- the closed loop --------------------------------------------------------------------

@test
def closed_loop_figures_follow_what_the_mock_was_told():
    with MockProcess("--ttft-ms", "40", "--itl-ms", "4") as m, Tmp() as t:
        r, p = bench_json(["--base-url", m.base, "--model", "openai/m", "--requests", "60",
                           "--concurrency", "20", "--max-tokens", "10", "--prompt-tokens", "30"],
                          t.path("r.json"))
    assert r["schema"] == "llmring.bench/1"
    assert r["completed"] == 60 and r["failed"] == 0 and r["sent"] == 60
    assert r["total_output_tokens"] == 600 and r["output_tokens_counted"] == 0
    ttft, tpot, itl, e2el = r["ttft_ms"], r["tpot_ms"], r["itl_ms"], r["e2el_ms"]
    assert 40 <= ttft["mean"] < 40 + 60, ttft
    # The mock paces on absolute times: a first token late by d ms makes TPOT d/9 ms
    # short (a loaded machine gave 3.66); half of 4 still tells pacing from none.
    assert 4 * 0.5 <= tpot["median"] < 4 + 20, tpot
    # vLLM's E2EL: first event plus 9 gaps of ~4 ms to the last token (and the
    # finish chunk right behind it).
    assert e2el["min"] >= 40 + 9 * 4, e2el
    # 12 choice events a stream (the role chunk, 10 tokens, the finish chunk):
    # 11 gaps each, pooled.
    assert itl["count"] == 60 * 11, itl
    assert set(ttft["percentiles"]) == {"50", "90", "99"}
    # Closed loop: sent when a slot freed, so nothing waits on a schedule.
    assert r["schedule_lag_ms"]["percentiles"]["99"] < 1, r["schedule_lag_ms"]
    assert r["max_concurrent_requests"] == 20
    assert r["client_cpu_s"] > 0 and r["client_lagged"] == (p.returncode == 3)
    assert sum(s["sent"] for s in r["timeline"]) == 60


@test
def warm_up_is_not_counted():
    with MockProcess("--ttft-ms", "10") as m, Tmp() as t:
        r, _ = bench_json(["--base-url", m.base, "--model", "openai/m", "--requests", "30",
                           "--warmup", "25", "--concurrency", "5", "--max-tokens", "4"],
                          t.path("r.json"))
        m.proc.send_signal(2)
        served = m.proc.stderr.read()
    assert r["completed"] == 30 and r["sent"] == 30
    assert "served 55 requests" in served, served


@test
def counted_part_takes_the_warm_up_slots_as_they_free():
    """The warm-up is not drained first (that would send the counted part's first
    wave in lock-step): each counted request is sent when a warm-up one ends."""
    with MockProcess("--ttft-ms", "60") as m, Tmp() as t:
        p = run(["--base-url", m.base, "--model", "openai/m", "--requests", "5", "--warmup", "5",
                 "--concurrency", "5", "--max-tokens", "2", "--quiet",
                 "--requests-out", t.path("rq.jsonl")])
        assert p.returncode in (0, 3), p.stderr
        lines = [json.loads(x) for x in open(t.path("rq.jsonl"))]
    assert len(lines) == 5
    # The warm-up's five went out just before the counted part began and hold
    # every slot for about 60 ms: no counted request can go before they end.
    assert min(x["sent_ms"] for x in lines) >= 30, [x["sent_ms"] for x in lines]
    # Closed loop: intended when the slot freed, so no schedule lag.
    assert all(x["sent_ms"] - x["intended_ms"] < 5 for x in lines), lines


@test
def whole_responses_make_ttft_the_latency():
    with MockProcess("--ttft-ms", "20") as m, Tmp() as t:
        r, _ = bench_json(["--base-url", m.base, "--model", "openai/m", "--requests", "20",
                           "--concurrency", "4", "--no-stream", "--max-tokens", "8"],
                          t.path("r.json"))
    assert r["stream"] is False and r["completed"] == 20
    assert r["ttft_ms"]["mean"] == r["e2el_ms"]["mean"] and r["ttft_ms"]["mean"] >= 20
    assert r["total_output_tokens"] == 160 and r["itl_ms"]["count"] == 0


@test
def duration_stops_sending_then_waits_for_what_is_out():
    with MockProcess("--ttft-ms", "30") as m, Tmp() as t:
        r, _ = bench_json(["--base-url", m.base, "--model", "openai/m", "--duration", "1",
                           "--concurrency", "4", "--max-tokens", "4"], t.path("r.json"))
    assert r["failed"] == 0 and r["completed"] == r["sent"] > 20
    assert 1.0 <= r["duration_s"] < 3, r["duration_s"]


# ---- the open loop ----------------------------------------------------------------------

@test
def open_loop_schedule_is_seeded_and_rescaled_as_vllm():
    outs = []
    with MockProcess() as m, Tmp() as t:
        for k, seed in enumerate(("7", "7", "8")):
            path = t.path("rq%d.jsonl" % k)
            p = run(["--base-url", m.base, "--model", "openai/m", "--requests", "50",
                     "--rate", "100", "--burstiness", "0.5", "--seed", seed, "--max-tokens", "2",
                     "--requests-out", path, "--quiet"])
            assert p.returncode in (0, 3), p.stderr
            with open(path) as f:
                outs.append(sorted(json.loads(line)["intended_ms"] for line in f))
    assert len(outs[0]) == 50
    assert outs[0] == outs[1] and outs[0] != outs[2]
    # vLLM rescales the schedule: the last request is due at exactly N / rate.
    assert abs(outs[0][-1] - 500.0) < 0.01, outs[0][-1]


@test
def open_loop_over_capacity_shows_what_vllm_leaves_out():
    """Capped at 2 requests at a time, each 50 ms, the client can send 40 a
    second; asked for 100 a second, the requests queue. vLLM's TTFT counts
    from the send; from the intended time it keeps growing."""
    with MockProcess("--ttft-ms", "50") as m, Tmp() as t:
        r, _ = bench_json(["--base-url", m.base, "--model", "openai/m", "--requests", "60",
                           "--rate", "100", "--concurrency", "2", "--max-tokens", "2",
                           "--seed", "3"], t.path("r.json"), expect_rc=(0, 3))
    assert r["completed"] == 60
    assert r["ttft_ms"]["mean"] < 50 + 60, r["ttft_ms"]
    assert r["ttft_from_intended_ms"]["mean"] > 2 * r["ttft_ms"]["mean"], r
    assert r["queue_wait_ms"]["mean"] > 50, r["queue_wait_ms"]
    assert r["ttft_from_intended_ms"]["max"] > 500, r["ttft_from_intended_ms"]


@test
def open_loop_keeps_its_rate():
    with MockProcess() as m, Tmp() as t:
        p = run(["--base-url", m.base, "--model", "openai/m", "--requests", "200",
                 "--rate", "200", "--max-tokens", "2", "--json", t.path("r.json"), "--quiet"])
        assert p.returncode in (0, 3), p.stderr
        r = json.load(open(t.path("r.json")))
    assert r["completed"] == 200
    assert 150 < r["achieved_rate"] < 260, r["achieved_rate"]
    lag = r["schedule_lag_ms"]
    assert lag["count"] == 200 and lag["min"] >= 0
    assert r["client_lagged"] == (p.returncode == 3)


# ---- errors, outputs, datasets -----------------------------------------------------------

@test
def failures_are_counted_by_code_and_left_out_of_latencies():
    with MockProcess("--fault", "500:0.5", "--seed", "2", "--ttft-ms", "10") as m, Tmp() as t:
        r, _ = bench_json(["--base-url", m.base, "--model", "openai/m", "--requests", "80",
                           "--concurrency", "8", "--max-tokens", "3"], t.path("r.json"),
                          expect_rc=1)
    assert r["failed"] > 10 and r["completed"] > 10 and r["completed"] + r["failed"] == 80
    assert r["errors"] == {"server_error": r["failed"]}, r["errors"]
    assert r["ttft_ms"]["count"] == r["completed"]
    assert r["total_output_tokens"] == 3 * r["completed"]


@test
def vllm_format_has_save_result_keys():
    with MockProcess("--ttft-ms", "10") as m, Tmp() as t:
        r, _ = bench_json(["--base-url", m.base, "--model", "openai/m", "--requests", "10",
                           "--concurrency", "2", "--max-tokens", "5", "--goodput",
                           "ttft:1000,e2el:5000", "--percentiles", "25,50,99.9"],
                          t.path("v.json"), fmt="vllm")
    for k in ("duration", "completed", "total_input_tokens", "total_output_tokens",
              "request_throughput", "request_goodput", "output_throughput",
              "total_token_throughput", "mean_ttft_ms", "median_ttft_ms", "std_ttft_ms",
              "p25_ttft_ms", "p99.9_ttft_ms", "mean_tpot_ms", "p50_itl_ms", "mean_e2el_ms",
              "max_concurrency", "request_rate", "burstiness", "model_id"):
        assert k in r, k
    assert r["completed"] == 10 and r["request_goodput"] > 0
    assert r["request_rate"] == "inf" and r["max_concurrency"] == 2
    # vLLM's per-request lists, in seconds.
    assert r["output_lens"] == [5] * 10 and len(r["itls"]) == 10 and r["errors"] == [""] * 10
    assert all(t >= 0.010 for t in r["ttfts"]) and all(len(x) == 6 for x in r["itls"])
    assert abs(sum(r["ttfts"]) / 10 * 1000 - r["mean_ttft_ms"]) < 0.01


@test
def requests_out_has_one_line_per_request():
    with Tmp() as t:
        p = run(["--mock", "--model", "mock/m", "--requests", "25", "--concurrency", "5",
                 "--max-tokens", "6", "--requests-out", t.path("rq.jsonl")])
        # An instant server in this process keeps the client busy: 3 may say so.
        assert p.returncode in (0, 3), p.stderr
        assert "Serving Benchmark Result" in p.stdout and "From the intended send time" in p.stdout
        lines = [json.loads(x) for x in open(t.path("rq.jsonl"))]
    assert len(lines) == 25
    for x in lines:
        assert x["error"] is None and x["http_status"] == 200 and x["output_tokens"] == 6
        assert x["sent_ms"] >= x["intended_ms"] >= 0
        assert x["end_ms"] >= x["last_event_ms"] >= x["first_event_ms"] >= x["sent_ms"]
        assert x["events"] >= 7 and x["text_events"] == 6


@test
def random_range_ratio_draws_lengths_as_vllm():
    """vLLM's --random-range-ratio: each prompt's length and max_tokens uniform in
    [int(X (1 - r)), int(X (1 + r))]; with ignore_eos the mock generates exactly that."""
    def lengths(seed):
        with Tmp() as t:
            p = run(["--mock", "--model", "m", "--requests", "400", "--concurrency", "8",
                     "--max-tokens", "20", "--prompt-tokens", "10", "--ignore-eos",
                     "--random-range-ratio", "0.5", "--seed", str(seed), "--quiet",
                     "--requests-out", t.path("rq.jsonl")])
            assert p.returncode in (0, 3), p.stderr
            return [json.loads(x) for x in open(t.path("rq.jsonl"))]
    a = lengths(7)
    out = [x["output_tokens"] for x in a]
    assert len(out) == 400 and min(out) >= 10 and max(out) <= 30, (min(out), max(out))
    # 21 values, 400 draws: every one of them and both ends show up.
    assert len(set(out)) >= 18 and min(out) == 10 and max(out) == 30, sorted(set(out))
    assert 18 <= sum(out) / len(out) <= 22, sum(out) / len(out)
    # Prompts: 5 to 15 words (the mock counts about one token a word).
    assert len(set(x["prompt_tokens"] for x in a)) >= 5
    # Seeded: the same seed draws the same lengths, another seed others.
    assert sorted(out) == sorted(x["output_tokens"] for x in lengths(7))
    assert out != [x["output_tokens"] for x in lengths(8)]


@test
def datasets_jsonl_and_sharegpt():
    with MockProcess("--ttft-ms", "10") as m, Tmp() as t:
        with open(t.path("b.jsonl"), "w") as f:
            f.write(json.dumps({"custom_id": "a", "method": "POST", "url": "/v1/chat/completions",
                                "body": {"model": "x", "messages": [{"role": "user",
                                                                     "content": "hi"}],
                                         "max_tokens": 3}}) + "\n")
            f.write(json.dumps({"model": "x", "messages": [{"role": "user", "content": "yo"}],
                                "max_tokens": 5}) + "\n")
        r, _ = bench_json(["--base-url", m.base, "--model", "openai/m", "--requests", "10",
                           "--concurrency", "2", "--dataset", "jsonl:" + t.path("b.jsonl")],
                          t.path("r.json"))
        assert r["completed"] == 10 and r["total_output_tokens"] == 5 * 3 + 5 * 5, r
        share = [{"id": "1", "conversations": [{"from": "human", "value": "tell me"},
                                               {"from": "gpt", "value": "one two three four"}]},
                 {"id": "2", "conversations": [{"from": "human", "value": "only one turn"}]},
                 {"id": "3", "conversations": [{"from": "human", "value": "and you"},
                                               {"from": "gpt", "value": "a b"}]}]
        with open(t.path("s.json"), "w") as f:
            json.dump(share, f)
        r, _ = bench_json(["--base-url", m.base, "--model", "openai/m", "--requests", "4",
                           "--concurrency", "1", "--dataset", "sharegpt:" + t.path("s.json")],
                          t.path("r2.json"))
        assert r["completed"] == 4 and r["total_output_tokens"] == 4 + 2 + 4 + 2, r
        with open(t.path("bad.jsonl"), "w") as f:
            f.write('{"model": "x"}\n')
        p = run(["--base-url", m.base, "--model", "openai/m", "--concurrency", "1",
                 "--dataset", "jsonl:" + t.path("bad.jsonl")])
        assert p.returncode == 2 and "bad.jsonl:1: no chat body" in p.stderr, p.stderr
        # An output naming the dataset (here through a symbolic link) is refused, the file kept.
        os.symlink(t.path("b.jsonl"), t.path("link.json"))
        before = open(t.path("b.jsonl")).read()
        p = run(["--base-url", m.base, "--model", "openai/m", "--concurrency", "1",
                 "--dataset", "jsonl:" + t.path("b.jsonl"), "--json", t.path("link.json")])
        assert p.returncode == 2 and "overwrite the dataset" in p.stderr, p.stderr
        assert open(t.path("b.jsonl")).read() == before


@test
def completions_endpoint_and_ignore_eos():
    """vLLM bench's default: /v1/completions with ignore_eos, so every reply is
    max_tokens long (the mock honours it exactly, as a server told to)."""
    with MockProcess("--ttft-ms", "15", "--itl-ms", "2", "--tokens", "4") as m, Tmp() as t:
        r, _ = bench_json(["--base-url", m.base, "--model", "openai/m", "--requests", "20",
                           "--concurrency", "5", "--endpoint", "completions", "--ignore-eos",
                           "--max-tokens", "12"], t.path("r.json"), expect_rc=(0, 3))
        r2, _ = bench_json(["--base-url", m.base, "--model", "openai/m", "--requests", "10",
                            "--concurrency", "5", "--max-tokens", "12"], t.path("r2.json"),
                           expect_rc=(0, 3))
    assert r["completed"] == 20 and r["total_output_tokens"] == 20 * 12, r
    assert r["ttft_ms"]["min"] >= 15 and r["tpot_ms"]["median"] >= 2 - 0.2
    # 12 token chunks and the finish chunk: 12 gaps a request.
    assert r["itl_ms"]["count"] == 20 * 12, r["itl_ms"]
    # Without ignore_eos the mock's model stops at its own length (--tokens 4).
    assert r2["total_output_tokens"] == 10 * 4, r2
    with Tmp() as t:
        r3, _ = bench_json(["--mock", "--model", "m", "--requests", "10", "--concurrency", "2",
                            "--max-tokens", "40", "--endpoint", "completions"], t.path("r3.json"),
                           expect_rc=(0, 3))
    assert r3["total_output_tokens"] == 400, r3


@test
def every_dialect_and_tls():
    """Each provider through its own dialect (the model's prefix), and HTTPS
    with the server's CA: the same figures come out."""
    with MockProcess("--ttft-ms", "10", "--itl-ms", "1") as m, Tmp() as t:
        for model in ("openai/m", "anthropic/claude-x", "ollama/qwen3:4b", "gemini/gemini-x"):
            r, p = bench_json(["--base-url", m.url, "--model", model, "--requests", "12",
                               "--concurrency", "4", "--max-tokens", "5"],
                              t.path("d.json"), expect_rc=(0, 3))
            assert r["completed"] == 12 and r["failed"] == 0, (model, r["errors"], p.stderr)
            assert r["total_output_tokens"] == 12 * 5, (model, r["total_output_tokens"])
            assert r["ttft_ms"]["min"] >= 10 and r["output_tokens_counted"] == 0, model
    with Certs() as c, c.mock() as m, Tmp() as t:
        r, p = bench_json(["--base-url", https_base(m), "--model", "openai/m", "--requests", "20",
                           "--concurrency", "4", "--max-tokens", "3", "--cacert",
                           c.path("ca.crt")], t.path("tls.json"), expect_rc=(0, 3))
        assert r["completed"] == 20, (r["errors"], p.stderr)
        p = run(["--base-url", https_base(m), "--model", "openai/m", "--requests", "3",
                 "--concurrency", "1", "--quiet", "--json", t.path("bad.json")])
        assert p.returncode == 1, p.stderr
        assert json.load(open(t.path("bad.json")))["errors"] == {"tls_untrusted": 3}


@test
def ctrl_c_reports_what_completed():
    with MockProcess("--ttft-ms", "20") as m, Tmp() as t:
        proc = subprocess.Popen([base.LLMRING, "bench", "--base-url", m.base, "--model",
                                 "openai/m", "--duration", "60", "--concurrency", "4",
                                 "--max-tokens", "2", "--json", t.path("r.json")],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode in (0, 3), (proc.returncode, err)
        assert "Interrupted" in out, out
        r = json.load(open(t.path("r.json")))
    assert r["interrupted"] is True and r["completed"] > 10 and r["failed"] == 0
    assert r["completed"] == r["sent"]  # what was on the wire finished


def svg_panels(path):
    import xml.etree.ElementTree as ET
    ns = "{http://www.w3.org/2000/svg}"
    root = ET.parse(path).getroot()  # raises on anything that is not well-formed XML
    assert root.tag == ns + "svg"
    panels = {}
    for g in root.findall(ns + "g"):
        title = g.find(ns + "title").text
        lines = {}
        for pl in g.iter(ns + "polyline"):
            pts = [tuple(map(float, xy.split(","))) for xy in pl.get("points").split()]
            lines[pl.get("class")] = pts
        panels[title] = lines
    return panels


@test
def svg_is_xml_with_every_panel():
    with MockProcess("--ttft-ms", "20", "--itl-ms", "2") as m, Tmp() as t:
        p = run(["--base-url", m.base, "--model", "openai/<m&\"x\">", "--duration", "2.5",
                 "--rate", "40", "--max-tokens", "6", "--svg", t.path("b.svg"), "--quiet"])
        assert p.returncode in (0, 3), p.stderr
        panels = svg_panels(t.path("b.svg"))
    assert set(panels) == {"TTFT (CDF)", "TPOT (CDF)", "ITL (CDF)", "E2EL (CDF)",
                           "Throughput over time", "Requests in flight"}, panels.keys()
    for name in ("TTFT (CDF)", "TPOT (CDF)", "ITL (CDF)", "E2EL (CDF)"):
        pts = panels[name]["cdf"]
        assert len(pts) >= 50, (name, len(pts))
        ys = [y for _, y in pts]  # SVG y grows downwards: a CDF's y never grows
        assert all(a >= b for a, b in zip(ys, ys[1:])), name
    assert len(panels["Throughput over time"]["tokens"]) >= 2


@test
def sweep_runs_each_point_and_tabulates():
    with MockProcess("--ttft-ms", "10") as m, Tmp() as t:
        p = run(["--base-url", m.base, "--model", "openai/m", "--requests", "40",
                 "--sweep", "concurrency:1,4,16", "--max-tokens", "3",
                 "--json", t.path("s.json"), "--svg", t.path("s.svg"),
                 "--requests-out", t.path("rq.jsonl")])
        assert p.returncode in (0, 3), p.stderr
        assert p.stdout.count("Serving Benchmark Result") == 3
        assert "concurrency  completed" in p.stdout
        d = json.load(open(t.path("s.json")))
        rq = [json.loads(x) for x in open(t.path("rq.jsonl"))]
        panels = svg_panels(t.path("s.svg"))
        p2 = run(["--base-url", m.base, "--model", "openai/m", "--requests", "10",
                  "--sweep", "rate:20,80", "--max-tokens", "2", "--format", "vllm",
                  "--json", t.path("v.json"), "--quiet"])
        assert p2.returncode in (0, 3), p2.stderr
        v = json.load(open(t.path("v.json")))
    assert d["schema"] == "llmring.bench.sweep/1"
    assert [x["concurrency"] for x in d["points"]] == [1, 4, 16]
    assert all(x["completed"] == 40 for x in d["points"])
    assert sorted({x["sweep_point"] for x in rq}) == [0, 1, 2] and len(rq) == 120
    assert len(panels["Throughput against latency (one point per run)"]["p99"]) == 3
    assert isinstance(v, list) and [x["request_rate"] for x in v] == [20, 80]
    p = run(["--mock", "--model", "m", "--concurrency", "2", "--sweep", "concurrency:1,2"])
    assert p.returncode == 2 and "leave out that flag" in p.stderr
    p = run(["--mock", "--model", "m", "--sweep", "concurrency:1.5"])
    assert p.returncode == 2 and "whole one" in p.stderr


def main():
    return base.run_tests(TESTS, "test_cli_bench.py")


if __name__ == "__main__":
    sys.exit(main())
