#!/usr/bin/env python3
"""Fault soak for `llmring batch` (python3 stdlib only).

Generates a big batch input (unique custom_ids, several providers, streaming
and embeddings lines, a few unusable lines and duplicate ids), starts
`llmring mock` as its own process with every fault kind at a low rate, runs
`llmring batch` against it at concurrencies from 64 to 20,000, SIGKILLs it at
random moments (resuming with the same -o every time), lets one run finish
under faults, then restarts the mock without faults and runs --retry-errors
until every usable line has succeeded.

Checks: one outcome line per custom_id (and per unusable input line), no torn
line, no duplicate, every usable line succeeded, the deliberate ones carry
their error codes, no process hung. Ends with `soak: N passed, N failed`.

    tools/soak.py [build-release/llmring] [--requests N] [--kills N] [--seed N]

Exit status 0 when every check passed, 1 otherwise.
"""
import argparse
import collections
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time

FAULT_KINDS = ["429", "500", "503", "529", "stream-error", "reset", "truncate",
               "malformed", "slow-headers", "close"]

RESULTS = []  # (name, ok, detail)


def check(name, ok, detail=""):
    RESULTS.append((name, bool(ok), detail))
    print(f"  [{'PASS' if ok else 'FAIL'}] {name}{': ' + detail if detail else ''}", flush=True)
    return ok


def nofile_preexec(n):
    """Child-side: raise (or lower) RLIMIT_NOFILE to n, capped at the hard limit."""
    def f():
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = n if hard == resource.RLIM_INFINITY else min(n, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        except (ValueError, OSError):
            pass
        os.setpgrp()
    return f


def nofile_hard():
    return resource.getrlimit(resource.RLIMIT_NOFILE)[1]


# --------------------------------------------------------------- the input
def gen_input(path, n, seed):
    """Writes n usable request lines plus unusable ones. Returns the expected
    outcome set: {key: expected_code or None}, where key is ('id', cid) or
    ('line', input_line)."""
    rnd = random.Random(seed)
    chat_models = ["openai/gpt-4o-mini", "gpt-4o", "anthropic/claude-haiku-4-5",
                   "mock/soak", "meta-llama/Llama-3.1-8B-Instruct", "ollama/qwen3:4b",
                   "gemini/gemini-2.0-flash"]
    emb_models = ["openai/text-embedding-3-small"]
    expected = {}
    # unusable lines at random positions (1-based input lines)
    total = n + 8
    bad_pos = sorted(rnd.sample(range(2, total + 1), 8))
    bad_kinds = ["notjson", "notjson", "nomodel", "nocid", "badurl", "dup", "dup", "notobj"]
    rnd.shuffle(bad_kinds)
    bad = dict(zip(bad_pos, bad_kinds))
    seen_ids = []
    i = 0
    with open(path, "w") as f:
        for ln in range(1, total + 1):
            k = bad.get(ln)
            if k is not None and (k != "dup" or seen_ids):
                if k == "notjson":
                    f.write('{"custom_id":"torn-%d","method":"POST","url":\n' % ln)
                    expected[("line", ln)] = "invalid_input"
                elif k == "notobj":
                    f.write('[1,2,3]\n')
                    expected[("line", ln)] = "invalid_input"
                elif k == "nomodel":
                    f.write(json.dumps({"custom_id": f"nomodel-{ln}", "method": "POST",
                                        "url": "/v1/chat/completions",
                                        "body": {"messages": [{"role": "user", "content": "x"}]}}) + "\n")
                    expected[("line", ln)] = "invalid_input"
                elif k == "nocid":
                    f.write(json.dumps({"method": "POST", "url": "/v1/chat/completions",
                                        "body": {"model": "mock/x", "messages": []}}) + "\n")
                    expected[("line", ln)] = "invalid_input"
                elif k == "badurl":
                    f.write(json.dumps({"custom_id": f"badurl-{ln}", "method": "POST",
                                        "url": "/v1/frobnicate",
                                        "body": {"model": "mock/x", "messages": []}}) + "\n")
                    expected[("line", ln)] = "invalid_input"
                else:  # dup: repeats an earlier id
                    cid = rnd.choice(seen_ids)
                    f.write(json.dumps({"custom_id": cid, "method": "POST",
                                        "url": "/v1/chat/completions",
                                        "body": {"model": "mock/x", "messages":
                                                 [{"role": "user", "content": "dup"}]}}) + "\n")
                    expected[("line", ln)] = "duplicate_custom_id"
                continue
            if i >= n:
                continue
            cid = f"soak-{seed}-{i:07d}"
            i += 1
            seen_ids.append(cid) if len(seen_ids) < 1000 else None
            r = rnd.random()
            if r < 0.08:
                body = {"model": rnd.choice(emb_models), "input": f"embed me {i}"}
                url = "/v1/embeddings"
            else:
                body = {"model": rnd.choice(chat_models), "max_tokens": 32,
                        "messages": [{"role": "user", "content": f"soak request {i} " + "w " * rnd.randrange(1, 40)}]}
                if rnd.random() < 0.3:
                    body["stream"] = True
                url = "/v1/chat/completions"
            f.write(json.dumps({"custom_id": cid, "method": "POST", "url": url, "body": body},
                               separators=(",", ":")) + "\n")
            expected[("id", cid)] = None
    return expected


# --------------------------------------------------------------- the output
def scan_output(path, allow_partial_tail):
    """Returns (records, torn_middle, partial_tail, dup_keys)."""
    recs = {}
    dups = []
    torn = 0
    partial = False
    if not os.path.exists(path):
        return recs, 0, False, dups
    with open(path, "rb") as f:
        data = f.read()
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline
    if tail:
        partial = True
    for raw in lines:
        try:
            o = json.loads(raw)
            key = ("line", o["input_line"]) if "input_line" in o else ("id", o["custom_id"])
        except (ValueError, KeyError, TypeError):
            torn += 1
            continue
        if key in recs:
            dups.append(key)
        recs[key] = o
    return recs, torn, partial, dups


def outcome_code(o):
    e = o.get("error")
    if e is None:
        return None
    return e.get("code") if isinstance(e, dict) else "?"


# --------------------------------------------------------------- processes
class Mock:
    def __init__(self, binary, faults, rate, seed, workdir, nofile):
        self.log = open(os.path.join(workdir, f"mock-{time.time_ns()}.log"), "w+")
        cmd = ["nice", binary, "mock", "--listen", "127.0.0.1:0", "--seed", str(seed)]
        if faults:
            for k in FAULT_KINDS:
                cmd += ["--fault", f"{k}:{rate}"]
        self.p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.log,
                                  preexec_fn=nofile_preexec(nofile), text=True)
        line = ""
        t0 = time.time()
        while time.time() - t0 < 10:
            line = self.p.stdout.readline()
            if "listening on" in line or not line:
                break
        if "listening on" not in line:
            self.stop()
            raise RuntimeError("mock did not start: " + line)
        self.url = line.split("listening on", 1)[1].strip()
        self.port = int(self.url.rsplit(":", 1)[1])

    def alive(self):
        return self.p.poll() is None

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(5)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()


def run_batch(binary, inp, out, base, conc, extra, bound, kill_after=None, nofile=None, stats=None,
              kill_at_size=None):
    """Runs one batch; SIGKILLs it after kill_after seconds or once the output
    reaches kill_at_size bytes. Returns dict(rc, killed, hung, wall, stderr_tail,
    vmhwm_kb)."""
    cmd = ["nice", binary, "batch", inp, "-o", out, "--base-url", base,
           "--concurrency", str(conc), "--quiet",
           "--timeout", "5", "--connect-timeout", "3", "--idle-timeout", "3"] + extra
    if stats:
        cmd += ["--stats", stats]
    errf = tempfile.TemporaryFile(mode="w+")
    t0 = time.time()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=errf,
                         preexec_fn=nofile_preexec(nofile or max(1024, conc + 256)))
    killed = hung = False
    deadline = t0 + (kill_after if kill_after is not None else bound)
    hwm = 0
    while True:
        try:
            p.wait(timeout=min(0.05, max(0.0, deadline - time.time())))
            break
        except subprocess.TimeoutExpired:
            pass
        hwm = max(hwm, read_hwm(p.pid))
        grown = False
        if kill_at_size is not None:
            try:
                grown = os.path.getsize(out) >= kill_at_size
            except OSError:
                pass
        if grown or time.time() >= deadline:
            p.send_signal(signal.SIGKILL)
            p.wait()
            if kill_after is not None or grown:
                killed = True
            else:
                hung = True
            break
    wall = time.time() - t0
    errf.seek(0)
    tail = errf.read()[-600:]
    errf.close()
    return {"rc": p.returncode, "killed": killed, "hung": hung, "wall": wall,
            "stderr": tail, "vmhwm_kb": hwm}


def read_hwm(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


# --------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("binary", nargs="?", default="build-release/llmring")
    ap.add_argument("--requests", type=int, default=200000)
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--seed", type=int, default=int(time.time()) % 100000)
    ap.add_argument("--fault-rate", type=float, default=0.002,
                    help="share of requests per fault kind (10 kinds)")
    ap.add_argument("--base-path", default="/v1",
                    help="path appended to the mock's URL for --base-url (/v1)")
    ap.add_argument("--max-conc", type=int, default=20000)
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    a = ap.parse_args()
    binary = os.path.abspath(a.binary)
    if not os.access(binary, os.X_OK):
        print(f"soak: no executable {binary}", file=sys.stderr)
        return 2
    t_start = time.time()
    rnd = random.Random(a.seed)
    work = tempfile.mkdtemp(prefix="llmring-soak-")
    inp, out = os.path.join(work, "in.jsonl"), os.path.join(work, "out.jsonl")
    hard = nofile_hard()
    print(f"soak: seed {a.seed}, {a.requests} requests, work dir {work}, RLIMIT_NOFILE hard {hard}")
    expected = gen_input(inp, a.requests, a.seed)
    n_bad = sum(1 for v in expected.values() if v)
    print(f"soak: input {len(expected)} lines ({n_bad} deliberately unusable/duplicate), "
          f"{os.path.getsize(inp) >> 20} MiB, {time.time() - t_start:.1f} s to generate")

    # generous bounds: the whole job at a pessimistic 1,500 req/s, plus slack
    full_bound = 60 + a.requests / 1500
    concs = [64, a.max_conc, 256, 1000, 8000, 2000, 15000, 500, 4000, 128]
    mock = Mock(binary, True, a.fault_rate, a.seed, work, hard)
    base = mock.url + a.base_path
    print(f"soak: mock (faults {', '.join(FAULT_KINDS)} at {a.fault_rate} each) on {mock.url}")
    kills = 0
    hung = []
    torn_mid = 0
    dup_mid = 0
    progress = []
    at_max = None
    ok_run = True
    bytes_per_outcome = 700  # until the first run measures it
    for k in range(a.kills):
        conc = concs[k % len(concs)]
        # A random moment: a third during start-up or the resume scan, the
        # rest once the output has grown by 1-7 % of the job (so that all
        # ten land while lines remain, however fast the machine is).
        size_now = os.path.getsize(out) if os.path.exists(out) else 0
        startup = rnd.random() < 0.3
        when, at_size = rnd.uniform(0.02, 0.3), None
        if not startup:
            when = full_bound
            at_size = size_now + int(rnd.uniform(0.01, 0.07) * a.requests * bytes_per_outcome)
        if conc == a.max_conc:
            # Long enough to see what it does at the fd limit, but bounded by
            # size too: a fast machine finished most of the job in these 3 s
            # and left the later kills nothing to land on (CI, stop 18).
            when = 3.0
            at_size = size_now + int(0.08 * a.requests * bytes_per_outcome)
        # No retries while killing: faults become error lines that the
        # resumed runs keep, and --retry-errors must heal at the end.
        r = run_batch(binary, inp, out, base, conc, ["--max-retries", "0"], full_bound,
                      kill_after=when, nofile=conc + 256, kill_at_size=at_size)
        recs, torn, partial, dups = scan_output(out, True)
        if recs:
            bytes_per_outcome = max(64, os.path.getsize(out) // len(recs))
        torn_mid += torn
        dup_mid += len(dups)
        kills += r["killed"]
        progress.append(len(recs))
        state = "killed" if r["killed"] else f"exited rc={r['rc']}"
        print(f"  run {k + 1}: concurrency {conc}, {state} after {r['wall']:.2f} s, "
              f"{len(recs)} outcomes, partial tail {partial}, RSS peak {r['vmhwm_kb'] >> 10} MiB")
        if conc == a.max_conc:
            codes = collections.Counter(outcome_code(o) for o in recs.values())
            at_max = (r, codes)
            print(f"    at concurrency {conc} (nofile soft {min(conc + 256, hard)}): rc={r['rc']} "
                  f"stderr: {r['stderr'].strip()[-300:] or '(none)'}")
        if not mock.alive():
            check("mock alive during kills", False, f"mock died, rc={mock.p.returncode}")
            mock = Mock(binary, True, a.fault_rate, a.seed + k, work, hard)
            base = mock.url + a.base_path
    check(f"all {a.kills} kills landed while lines remained", kills == a.kills,
          f"{kills} of {a.kills}")
    check(f"{a.kills} SIGKILLs survived: no torn line before the tail", torn_mid == 0,
          f"{torn_mid} torn lines seen")
    check("no duplicate outcome after any kill", dup_mid == 0, f"{dup_mid} duplicates")

    # let it finish under faults
    r = run_batch(binary, inp, out, base, 1000, ["--max-retries", "1"], full_bound,
                  stats=os.path.join(work, "stats-fault.json"))
    if r["hung"]:
        hung.append("faulted completion run")
    recs, torn, partial, dups = scan_output(out, False)
    fault_codes = collections.Counter(outcome_code(o) for k2, o in recs.items() if expected.get(k2) is None and outcome_code(o))
    print(f"  faulted completion run: rc={r['rc']} {r['wall']:.1f} s, {len(recs)} outcomes, "
          f"error lines by code: {dict(fault_codes)}")
    check("faulted run completes (not hung)", not r["hung"], f"killed after {full_bound:.0f} s" if r["hung"] else "")
    check("faulted run: an outcome for every input line", set(recs) == set(expected),
          f"{len(set(expected) - set(recs))} missing, {len(set(recs) - set(expected))} unexpected")
    try:
        st = json.load(open(os.path.join(work, "stats-fault.json")))
        print(f"    stats: {st}")
    except (OSError, ValueError):
        st = {}
    mock.stop()
    fault_log = mock.log

    # no faults: --retry-errors until done
    mock = Mock(binary, False, 0, a.seed, work, hard)
    base = mock.url + a.base_path
    retries_runs = 0
    final_rc = None
    for it in range(4):
        r = run_batch(binary, inp, out, base, 512, ["--retry-errors"], full_bound,
                      stats=os.path.join(work, f"stats-retry{it}.json"))
        retries_runs += 1
        final_rc = r["rc"]
        if r["hung"]:
            hung.append(f"retry-errors run {it + 1}")
            break
        recs, torn, partial, dups = scan_output(out, False)
        left = [k2 for k2, o in recs.items() if expected.get(k2) is None and outcome_code(o)]
        print(f"  --retry-errors run {it + 1}: rc={r['rc']} {r['wall']:.1f} s, {len(left)} usable lines still failed")
        if not left:
            break
    mock.stop()

    recs, torn, partial, dups = scan_output(out, False)
    check("final: every line parses as JSON (no torn line)", torn == 0 and not partial,
          f"{torn} torn, partial tail {partial}")
    check("final: no duplicate outcome", not dups, f"{len(dups)} duplicates, e.g. {dups[:3]}")
    missing = set(expected) - set(recs)
    extra = set(recs) - set(expected)
    check("final: exactly one outcome per custom_id / unusable line", not missing and not extra,
          f"{len(missing)} missing (e.g. {sorted(missing)[:3]}), {len(extra)} unexpected (e.g. {sorted(extra)[:3]})")
    bad_usable = [(k2, outcome_code(o)) for k2, o in recs.items()
                  if k2 in expected and expected[k2] is None and
                  (outcome_code(o) or (o.get("response") or {}).get("status_code") != 200)]
    check("final: every usable line succeeded (status 200, error null)", not bad_usable,
          f"{len(bad_usable)} not, e.g. {bad_usable[:3]}")
    wrong_codes = [(k2, expected[k2], outcome_code(o)) for k2, o in recs.items()
                   if expected.get(k2) and outcome_code(o) != expected[k2]]
    check("final: deliberate lines carry invalid_input / duplicate_custom_id", not wrong_codes,
          f"{wrong_codes[:4]}")
    check("final --retry-errors exit status 1 (only the deliberate errors left)", final_rc == 1,
          f"rc={final_rc}")
    check("no process hung", not hung, ", ".join(hung))
    if at_max:
        r, codes = at_max
        errs = {c: n for c, n in codes.items() if c}
        print(f"  note: concurrency {a.max_conc} with RLIMIT_NOFILE {min(a.max_conc + 256, hard)}: "
              f"rc={r['rc']}, {'killed' if r['killed'] else 'exited'}, outcome codes so far {errs}")
    wall = time.time() - t_start
    print(f"soak figures: requests {a.requests}, faults injected (error lines before retry) "
          f"{sum(fault_codes.values())} {dict(fault_codes)}, stats retries in faulted run "
          f"{st.get('retries')}, kills survived {kills}, wall {wall:.1f} s")
    passed = sum(1 for _, ok, _ in RESULTS if ok)
    failed = len(RESULTS) - passed
    if not a.keep and failed == 0:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"soak: work dir kept: {work}")
    print(f"soak: {passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
