#!/usr/bin/env python3
"""The mock's provider batch APIs (issue 13), end to end against `llmring
mock` as its own process: OpenAI Files + Batches and Anthropic Message
Batches, their lifecycle, downloads (resumed with Range after a cut),
cancel, list, validation, --state-dir across a restart, the submit counter
(/mock/stats, /mock/submits) and every batch fault.

usage: test_mock_batches.py PATH/TO/llmring
"""
import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback

LLMRING = None
TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


class Mock:
    def __init__(self, *args, phase_ms=40, state_dir=None):
        self.args = ["--batch-phase-ms", str(phase_ms)] + list(args)
        if state_dir:
            self.args += ["--state-dir", state_dir]

    def __enter__(self):
        self.p = subprocess.Popen([LLMRING, "mock", "--listen", "127.0.0.1:0"] + self.args,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.p.stdout.readline()
        assert "listening on" in line, "mock did not start: " + self.p.stderr.read()
        self.port = int(line.strip().rsplit(":", 1)[1])
        return self

    def stop(self, sig=signal.SIGTERM):
        self.p.send_signal(sig)
        self.p.wait(timeout=20)

    def __exit__(self, exc, *a):
        killed = self.p.poll() is not None  # by the test, with SIGKILL
        if not killed:
            self.stop()  # SIGTERM: an ordinary exit, so ASan reports leaks
        err = self.p.stderr.read()
        self.p.stdout.close()
        self.p.stderr.close()
        if exc is None:
            for bad in ("AddressSanitizer", "LeakSanitizer", "runtime error"):
                assert bad not in err, err[-4000:]

    def req(self, method, path, body=None, headers=None, raw=False):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        h = dict(headers or {})
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
            h.setdefault("Content-Type", "application/json")
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        data = r.read()
        c.close()
        if raw:
            return r.status, data, r
        return r.status, (json.loads(data) if data and data[:1] in b"{[" else data)

    def upload(self, content, purpose="batch", filename="in.jsonl", headers=None):
        bnd = "----llmringtest7MA4YWxk"
        body = ("--%s\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\n%s\r\n"
                "--%s\r\nContent-Disposition: form-data; name=\"file\"; filename=\"%s\"\r\n"
                "Content-Type: application/jsonl\r\n\r\n" % (bnd, purpose, bnd, filename)).encode()
        body += content + ("\r\n--%s--\r\n" % bnd).encode()
        h = {"Content-Type": "multipart/form-data; boundary=" + bnd}
        h.update(headers or {})
        return self.req("POST", "/v1/files", body, h)

    def create(self, file_id, endpoint="/v1/chat/completions", headers=None, metadata=None):
        b = {"input_file_id": file_id, "endpoint": endpoint, "completion_window": "24h"}
        if metadata is not None:
            b["metadata"] = metadata
        return self.req("POST", "/v1/batches", b, headers)

    def poll(self, path, done, timeout=60):
        seen = []
        end = time.time() + timeout
        while time.time() < end:
            st, b = self.req("GET", path)
            assert st == 200, (st, b)
            s = b.get("status") or b.get("processing_status")
            if not seen or seen[-1] != s:
                seen.append(s)
            if s in done:
                return b, seen
            time.sleep(0.01)
        raise AssertionError("no end state in %ss: %s" % (timeout, seen))


def line(i, model="gpt-4o-mini", content=None, url="/v1/chat/completions", cid=None):
    return json.dumps({"custom_id": cid or "r%d" % i, "method": "POST", "url": url,
                       "body": {"model": model, "max_tokens": 8, "messages": [
                           {"role": "user", "content": content or "hello %d" % i}]}})


def lines(n, **kw):
    return ("\n".join(line(i, **kw) for i in range(n)) + "\n").encode()


def jsonl(data):
    return [json.loads(x) for x in data.decode().splitlines() if x.strip()]


def run_openai(m, content, timeout=60, **kw):
    st, f = m.upload(content)
    assert st == 200, (st, f)
    st, b = m.create(f["id"], **kw)
    assert st == 200, (st, b)
    return m.poll("/v1/batches/" + b["id"], ("completed", "failed", "expired", "cancelled"),
                  timeout)


def areq(i, cid=None, max_tokens=8, content=None):
    p = {"model": "claude-haiku-4-5", "messages": [
        {"role": "user", "content": content or "hi %d" % i}]}
    if max_tokens is not None:
        p["max_tokens"] = max_tokens
    return {"custom_id": "a%d" % i if cid is None else cid, "params": p}


def run_anthropic(m, reqs, headers=None):
    st, b = m.req("POST", "/v1/messages/batches", {"requests": reqs}, headers)
    assert st == 200, (st, b)
    assert b["type"] == "message_batch" and b["processing_status"] == "in_progress", b
    return m.poll("/v1/messages/batches/" + b["id"], ("ended",))


def results(m, b):
    assert b["results_url"].startswith("http://127.0.0.1:%d/" % m.port), b["results_url"]
    st, data, _ = m.req("GET", b["results_url"].split(str(m.port), 1)[1], raw=True)
    assert st == 200, st
    return jsonl(data)


# ---- OpenAI ----

@test
def openai_batch_goes_through_every_status_and_answers_every_line():
    with Mock() as m:
        content = lines(30)
        st, f = m.upload(content, filename="my input.jsonl")
        assert st == 200 and f["object"] == "file" and f["purpose"] == "batch", f
        assert f["bytes"] == len(content) and f["filename"] == "my input.jsonl", f
        st, b = m.create(f["id"], metadata={"job": "t1"})
        assert st == 200 and b["object"] == "batch" and b["status"] == "validating", b
        for k in ("id", "endpoint", "errors", "input_file_id", "completion_window", "status",
                  "output_file_id", "error_file_id", "created_at", "in_progress_at",
                  "expires_at", "finalizing_at", "completed_at", "failed_at", "expired_at",
                  "cancelling_at", "cancelled_at", "request_counts", "metadata"):
            assert k in b, k
        assert b["metadata"] == {"job": "t1"} and b["expires_at"] == b["created_at"] + 86400
        b, seen = m.poll("/v1/batches/" + b["id"], ("completed",))
        assert seen[-1] == "completed" and "finalizing" in seen, seen
        assert b["request_counts"] == {"total": 30, "completed": 30, "failed": 0}, b
        assert b["error_file_id"] is None and b["completed_at"] >= b["created_at"]
        st, out = m.req("GET", "/v1/files/%s/content" % b["output_file_id"], raw=True)[:2]
        assert st == 200
        got = jsonl(out)
        ids = [r["custom_id"] for r in got]
        assert sorted(ids) == sorted("r%d" % i for i in range(30)), ids
        assert ids != ["r%d" % i for i in range(30)], "the order is shuffled"
        r = got[0]
        assert r["error"] is None and r["response"]["status_code"] == 200, r
        assert r["response"]["request_id"].startswith("req_mock_") and r["id"]
        body = r["response"]["body"]
        assert body["object"] == "chat.completion" and body["model"] == "gpt-4o-mini", body
        assert body["choices"][0]["finish_reason"] == "length"  # max_tokens 8 < 16
        st, f2 = m.req("GET", "/v1/files/" + b["output_file_id"])
        assert st == 200 and f2["purpose"] == "batch_output" and f2["bytes"] == len(out), f2


@test
def openai_output_order_is_the_same_for_the_same_seed():
    orders = []
    for _ in range(2):
        with Mock("--seed", "7") as m:
            b, _ = run_openai(m, lines(20))
            out = m.req("GET", "/v1/files/%s/content" % b["output_file_id"], raw=True)[1]
            orders.append([r["custom_id"] for r in jsonl(out)])
    assert orders[0] == orders[1]


@test
def openai_failed_lines_go_to_the_error_file():
    with Mock() as m:
        content = (line(0) + "\n" + line(1, content="mock-fault:500") + "\n" +
                   line(2, content="mock-fault:context") + "\n").encode()
        b, _ = run_openai(m, content)
        assert b["status"] == "completed", b
        assert b["request_counts"] == {"total": 3, "completed": 1, "failed": 2}, b
        err = jsonl(m.req("GET", "/v1/files/%s/content" % b["error_file_id"], raw=True)[1])
        codes = {r["custom_id"]: r["response"]["status_code"] for r in err}
        assert codes == {"r1": 500, "r2": 400}, codes
        assert all("error" in r["response"]["body"] for r in err)


@test
def openai_embeddings_batch():
    with Mock() as m:
        content = (json.dumps({"custom_id": "e1", "method": "POST", "url": "/v1/embeddings",
                               "body": {"model": "text-embedding-3-small", "input": ["a b", "c"]}})
                   + "\n").encode()
        b, _ = run_openai(m, content, endpoint="/v1/embeddings")
        assert b["status"] == "completed", b
        r = jsonl(m.req("GET", "/v1/files/%s/content" % b["output_file_id"], raw=True)[1])[0]
        assert len(r["response"]["body"]["data"]) == 2, r


@test
def files_get_list_delete():
    with Mock() as m:
        st, f = m.upload(lines(2))
        st, g = m.req("GET", "/v1/files/" + f["id"])
        assert st == 200 and g == f, (g, f)
        st, lst = m.req("GET", "/v1/files")
        assert st == 200 and lst["object"] == "list" and [x["id"] for x in lst["data"]] == [f["id"]]
        st, d = m.req("DELETE", "/v1/files/" + f["id"])
        assert st == 200 and d == {"id": f["id"], "object": "file", "deleted": True}, d
        st, e = m.req("GET", "/v1/files/" + f["id"])
        assert st == 404 and "No such File object" in e["error"]["message"], e
        st, e = m.create(f["id"])
        assert st == 404, (st, e)


@test
def upload_refuses_bad_multipart_and_purpose():
    with Mock() as m:
        st, e = m.req("POST", "/v1/files", b"x", {"Content-Type": "application/json"})
        assert st == 400 and "multipart" in e["error"]["message"], e
        st, e = m.req("POST", "/v1/files", b"--b\r\nContent-Disposition: form-data; name=\"file\"",
                      {"Content-Type": "multipart/form-data; boundary=b"})
        assert st == 400 and "parsed" in e["error"]["message"], e
        st, e = m.upload(b"{}\n", purpose="fine-tune")
        assert st == 400 and "purpose" in e["error"]["message"], e
        for name in ('é"\\' * 100, 'a' * 300, '\x01' * 100):
            st, f = m.upload(lines(1), filename=name)  # a JSON object whatever the name
            assert st == 200 and 0 < len(f["filename"]) <= 255 and name.startswith(f["filename"]), f


@test
def create_refuses_bad_parameters():
    with Mock() as m:
        st, f = m.upload(lines(1))
        st, e = m.req("POST", "/v1/batches", {"endpoint": "/v1/chat/completions",
                                              "completion_window": "24h"})
        assert st == 400 and e["error"]["code"] == "missing_required_parameter", e
        st, e = m.create(f["id"], endpoint="/v1/nope")
        assert st == 400 and "endpoint" in e["error"]["message"], e
        st, e = m.req("POST", "/v1/batches", {"input_file_id": f["id"], "endpoint":
                                              "/v1/chat/completions", "completion_window": "1h"})
        assert st == 400 and "completion_window" in e["error"]["message"], e
        st, e = m.req("GET", "/v1/batches/batch_nope")
        assert st == 404, (st, e)
        st, e = m.req("GET", "/v1/batches", headers={"x-mock-batch-fault": "nope"})
        assert st == 400 and "x-mock-batch-fault" in e["error"]["message"], e


def validation_codes(m, content):
    b, _ = run_openai(m, content)
    assert b["status"] == "failed" and b["failed_at"], b
    assert b["output_file_id"] is None and b["errors"]["object"] == "list", b
    return [(e["code"], e["line"]) for e in b["errors"]["data"]]


@test
def validation_fails_as_openai_validates():
    with Mock() as m:
        c = (line(0) + "\nnot json\n" + line(2, url="/v1/embeddings") + "\n" +
             line(3, cid="r0") + "\n" + line(4, model="gpt-4o") + "\n" +
             json.dumps({"custom_id": "x", "method": "GET", "url": "/v1/chat/completions",
                         "body": {}}) + "\n" +
             json.dumps({"custom_id": "y", "method": "POST", "url": "/v1/chat/completions"}) +
             "\n").encode()
        codes = validation_codes(m, c)
        assert codes == [("invalid_json_line", 2), ("invalid_url", 3), ("duplicate_custom_id", 4),
                         ("mismatched_model", 5), ("invalid_method", 6),
                         ("missing_required_parameter", 7)], codes
        assert validation_codes(m, b"\n") == [("empty_file", None)]


@test
def size_limit_50000_lines_pass_50001_fail_and_others_are_served_meanwhile():
    with Mock(phase_ms=20) as m:
        t0 = time.time()
        b, _ = run_openai(m, lines(50000), timeout=300)
        took = time.time() - t0
        assert b["status"] == "completed" and b["request_counts"]["completed"] == 50000, b
        out = m.req("GET", "/v1/files/%s/content" % b["output_file_id"], raw=True)[1]
        assert len(jsonl(out)) == 50000
        print("  50,000-line batch: upload to completed %.2f s, output %.1f MB" %
              (took, len(out) / 1e6))
        # a second one, while chat requests measure how long the loop stalls
        st, f = m.upload(lines(50000))
        st, b = m.create(f["id"])
        worst = 0
        while True:
            t = time.time()
            st, r = m.req("POST", "/v1/chat/completions",
                          {"model": "m", "messages": [{"role": "user", "content": "x"}]})
            worst = max(worst, time.time() - t)
            assert st == 200
            st, x = m.req("GET", "/v1/batches/" + b["id"])
            if x["status"] == "completed":
                break
        print("  slowest chat reply while a 50,000-line batch ran: %.1f ms" % (worst * 1e3))
        assert worst < 0.5, worst
        codes = validation_codes(m, lines(50001))
        assert codes == [("too_many_requests", None)], codes


@test
def range_download_resumes_and_bad_range_is_416():
    with Mock() as m:
        b, _ = run_openai(m, lines(5))
        path = "/v1/files/%s/content" % b["output_file_id"]
        st, full, _ = m.req("GET", path, raw=True)
        st, part, r = m.req("GET", path, headers={"Range": "bytes=100-"}, raw=True)
        assert st == 206 and part == full[100:], st
        assert r.getheader("Content-Range") == "bytes 100-%d/%d" % (len(full) - 1, len(full))
        st, part, r = m.req("GET", path, headers={"Range": "bytes=10-19"}, raw=True)
        assert st == 206 and part == full[10:20], st
        st, _, r = m.req("GET", path, headers={"Range": "bytes=%d-" % len(full)}, raw=True)
        assert st == 416 and r.getheader("Content-Range") == "bytes */%d" % len(full), st


def cut_download(m, path):
    """The first download: fewer bytes than Content-Length, then a close."""
    c = http.client.HTTPConnection("127.0.0.1", m.port, timeout=30)
    c.request("GET", path)
    r = c.getresponse()
    assert r.status == 200
    total = int(r.getheader("Content-Length"))
    try:
        got = r.read()
        raise AssertionError("not cut: %d of %d" % (len(got), total))
    except http.client.IncompleteRead as e:
        got = e.partial
    c.close()
    return got, total


@test
def cut_download_fault_strikes_once_per_file_and_range_resumes():
    with Mock("--batch-fault", "cut:1") as m:
        b, _ = run_openai(m, lines(40))
        path = "/v1/files/%s/content" % b["output_file_id"]
        got, total = cut_download(m, path)
        assert 0 < len(got) < total, (len(got), total)
        st, rest, r = m.req("GET", path, headers={"Range": "bytes=%d-" % len(got)}, raw=True)
        assert st == 206 and len(got) + len(rest) == total, (st, len(rest))
        st, full, _ = m.req("GET", path, raw=True)
        assert st == 200 and got + rest == full
        assert len(jsonl(full)) == 40


@test
def cut_download_by_header():
    with Mock() as m:
        b, _ = run_openai(m, lines(10))
        path = "/v1/files/%s/content" % b["output_file_id"]
        c = http.client.HTTPConnection("127.0.0.1", m.port, timeout=30)
        c.request("GET", path, headers={"x-mock-batch-fault": "cut"})
        r = c.getresponse()
        try:
            r.read()
            raise AssertionError("not cut")
        except http.client.IncompleteRead:
            pass
        c.close()
        st, full, _ = m.req("GET", path, headers={"x-mock-batch-fault": "cut"}, raw=True)
        assert st == 200 and len(jsonl(full)) == 10  # once per file


@test
def openai_cancel_keeps_partial_results():
    with Mock(phase_ms=300) as m:
        st, f = m.upload(lines(10))
        st, b = m.create(f["id"])
        st, c = m.req("POST", "/v1/batches/%s/cancel" % b["id"])
        assert st == 200 and c["status"] == "cancelling" and c["cancelling_at"], c
        b, seen = m.poll("/v1/batches/" + b["id"], ("cancelled",))
        assert b["cancelled_at"] and seen == ["cancelling", "cancelled"], seen
        st, e = m.req("POST", "/v1/batches/%s/cancel" % b["id"])
        assert st == 409, (st, e)


@test
def openai_list_pages_newest_first():
    with Mock() as m:
        st, f = m.upload(lines(1))
        ids = [m.create(f["id"])[1]["id"] for _ in range(3)]
        st, l1 = m.req("GET", "/v1/batches?limit=2")
        assert st == 200 and l1["object"] == "list" and l1["has_more"] is True, l1
        assert [x["id"] for x in l1["data"]] == ids[::-1][:2], l1
        st, l2 = m.req("GET", "/v1/batches?limit=2&after=" + l1["last_id"])
        assert [x["id"] for x in l2["data"]] == [ids[0]] and l2["has_more"] is False, l2


# ---- Anthropic ----

@test
def anthropic_batch_ends_with_results_for_every_request():
    with Mock() as m:
        reqs = [areq(i) for i in range(12)] + [areq(12, max_tokens=None)]
        b, seen = run_anthropic(m, reqs)
        for k in ("id", "type", "processing_status", "request_counts", "ended_at", "created_at",
                  "expires_at", "cancel_initiated_at", "results_url"):
            assert k in b, k
        assert b["request_counts"] == {"processing": 0, "succeeded": 12, "errored": 1,
                                       "canceled": 0, "expired": 0}, b
        assert b["created_at"].endswith("Z") and b["ended_at"], b
        res = results(m, b)
        by = {r["custom_id"]: r["result"] for r in res}
        assert len(res) == 13 and set(by) == {r["custom_id"] for r in reqs}
        ok = by["a0"]
        assert ok["type"] == "succeeded" and ok["message"]["type"] == "message", ok
        assert ok["message"]["model"] == "claude-haiku-4-5"
        bad = by["a12"]
        assert bad["type"] == "errored" and bad["error"]["type"] == "error", bad
        assert bad["error"]["error"]["type"] == "invalid_request_error", bad


@test
def anthropic_refuses_bad_custom_ids_and_duplicates_with_400():
    with Mock() as m:
        for cid in ("has space", "x" * 65, "", "ü"):
            st, e = m.req("POST", "/v1/messages/batches", {"requests": [areq(0, cid=cid)]})
            assert st == 400 and e["error"]["type"] == "invalid_request_error", (cid, st, e)
            assert "custom_id" in e["error"]["message"], e
        st, e = m.req("POST", "/v1/messages/batches", {"requests": [areq(0, cid="d"),
                                                                    areq(1, cid="d")]})
        assert st == 400 and "duplicate" in e["error"]["message"], e
        st, e = m.req("POST", "/v1/messages/batches", {"requests": []})
        assert st == 400, e
        st, s = m.req("GET", "/mock/stats")
        assert s["batch_lines_submitted"] == 0 and s["anthropic_batches"] == 0, s
        st, ok = m.req("POST", "/v1/messages/batches", {"requests": [areq(0, cid="A-z_09" * 10 + "abcd")]})
        assert st == 200, ok


@test
def anthropic_size_limit_100000_requests_pass_100001_fail():
    with Mock(phase_ms=20) as m:
        reqs = [areq(i) for i in range(100000)]
        t0 = time.time()
        st, b = m.req("POST", "/v1/messages/batches", {"requests": reqs})
        took = time.time() - t0
        assert st == 200 and b["request_counts"]["processing"] == 100000, b
        print("  100,000-request Anthropic create answered in %.0f ms" % (took * 1e3))
        b, _ = m.poll("/v1/messages/batches/" + b["id"], ("ended",), 300)
        assert b["request_counts"]["succeeded"] == 100000, b
        assert len(results(m, b)) == 100000
        reqs.append(areq(100000))
        st, e = m.req("POST", "/v1/messages/batches", {"requests": reqs})
        assert st == 400 and "100,000" in e["error"]["message"], e


@test
def anthropic_cancel_cancels_the_rest():
    with Mock(phase_ms=300) as m:
        st, b = m.req("POST", "/v1/messages/batches", {"requests": [areq(i) for i in range(5)]})
        st, c = m.req("POST", "/v1/messages/batches/%s/cancel" % b["id"])
        assert st == 200 and c["processing_status"] == "canceling" and c["cancel_initiated_at"], c
        b, _ = m.poll("/v1/messages/batches/" + b["id"], ("ended",))
        n = b["request_counts"]
        assert n["canceled"] + n["succeeded"] == 5 and n["canceled"] > 0, n
        kinds = [r["result"]["type"] for r in results(m, b)]
        assert kinds.count("canceled") == n["canceled"], kinds


@test
def anthropic_list_and_delete():
    with Mock() as m:
        ids = [m.req("POST", "/v1/messages/batches", {"requests": [areq(0)]})[1]["id"]
               for _ in range(3)]
        st, l = m.req("GET", "/v1/messages/batches?limit=2")
        assert st == 200 and [x["id"] for x in l["data"]] == ids[::-1][:2] and l["has_more"], l
        st, l2 = m.req("GET", "/v1/messages/batches?limit=5&after_id=" + l["last_id"])
        assert [x["id"] for x in l2["data"]] == [ids[0]] and not l2["has_more"], l2
        st, e = m.req("DELETE", "/v1/messages/batches/" + ids[0])
        if st == 400:  # not ended yet
            m.poll("/v1/messages/batches/" + ids[0], ("ended",))
            st, e = m.req("DELETE", "/v1/messages/batches/" + ids[0])
        assert st == 200 and e == {"id": ids[0], "type": "message_batch_deleted"}, e
        st, e = m.req("GET", "/v1/messages/batches/" + ids[0])
        assert st == 404 and e["error"]["type"] == "not_found_error", e


# ---- persistence and counting ----

@test
def state_dir_keeps_batches_files_and_counts_across_a_restart():
    with tempfile.TemporaryDirectory() as d:
        with Mock(state_dir=d) as m:
            bo, _ = run_openai(m, lines(6))
            ba, _ = run_anthropic(m, [areq(i) for i in range(4)])
            st, f = m.upload(b"".join(line(i, cid="s%d" % i).encode() + b"\n" for i in range(3)))
            st, running = m.create(f["id"])  # still validating when killed
            out = m.req("GET", "/v1/files/%s/content" % bo["output_file_id"], raw=True)[1]
            m.stop(signal.SIGKILL)
        assert not [n for sub in ("files", "batches") for n in os.listdir(os.path.join(d, sub))
                    if ".tmp" in n], "no temporary files left"
        with Mock(state_dir=d) as m:
            st, b = m.req("GET", "/v1/batches/" + bo["id"])
            assert st == 200 and b == bo, (b, bo)
            st, again = m.req("GET", "/v1/files/%s/content" % bo["output_file_id"], raw=True)[:2]
            assert again == out
            st, a = m.req("GET", "/v1/messages/batches/" + ba["id"])
            assert st == 200 and a["processing_status"] == "ended", a
            assert len(results(m, a)) == 4
            b, _ = m.poll("/v1/batches/" + running["id"], ("completed",))
            assert b["request_counts"]["completed"] == 3, b
            st, s = m.req("GET", "/mock/stats")
            assert s["batch_lines_submitted"] == 13 and s["max_submits"] == 1, s
            st, f2 = m.upload(lines(1))
            assert int(f2["id"][9:]) > int(f["id"][9:]), "ids are never given twice"


@test
def batches_killed_mid_work_finish_after_a_restart_with_consistent_counts():
    with tempfile.TemporaryDirectory() as d:
        with Mock(phase_ms=400, state_dir=d) as m:
            st, f = m.upload(lines(20))
            st, bo = m.create(f["id"])
            m.poll("/v1/batches/" + bo["id"], ("in_progress",))
            st, ba = m.req("POST", "/v1/messages/batches", {"requests": [areq(i) for i in range(20)]})
            time.sleep(0.1)
            st, c = m.req("POST", "/v1/messages/batches/%s/cancel" % ba["id"])
            assert c["processing_status"] == "canceling", c
            m.stop(signal.SIGKILL)
        with Mock(phase_ms=40, state_dir=d) as m:
            b, _ = m.poll("/v1/batches/" + bo["id"], ("completed",))
            assert b["request_counts"] == {"total": 20, "completed": 20, "failed": 0}, b
            out = jsonl(m.req("GET", "/v1/files/%s/content" % b["output_file_id"], raw=True)[1])
            assert sorted(r["custom_id"] for r in out) == sorted("r%d" % i for i in range(20))
            a, _ = m.poll("/v1/messages/batches/" + ba["id"], ("ended",))
            n = a["request_counts"]
            assert n["processing"] == 0 and n["succeeded"] + n["canceled"] == 20, n
            assert len(results(m, a)) == 20
            st, s = m.req("GET", "/mock/stats")
            assert s["batch_lines_submitted"] == 40 and s["max_submits"] == 1, s


@test
def submit_counter_reports_each_custom_id():
    with Mock() as m:
        run_openai(m, lines(3))
        run_openai(m, lines(2))
        run_anthropic(m, [areq(0, cid="r0")])
        st, s = m.req("GET", "/mock/stats")
        assert s["batch_lines_submitted"] == 6 and s["distinct_custom_ids"] == 3, s
        assert s["max_submits"] == 3 and s["repeated_custom_ids"] == 2, s
        assert sorted((r["custom_id"], r["count"]) for r in s["repeated"]) == [("r0", 3), ("r1", 2)]
        st, one = m.req("GET", "/mock/submits?custom_id=r2")
        assert one == {"custom_id": "r2", "count": 1}, one
        st, none = m.req("GET", "/mock/submits?custom_id=zz")
        assert none["count"] == 0
        st, allc = m.req("GET", "/mock/submits", raw=True)[:2]
        assert sorted((r["custom_id"], r["count"]) for r in jsonl(allc)) == \
            [("r0", 3), ("r1", 2), ("r2", 1)]


# ---- faults ----

@test
def fault_invalid_fails_validation():
    with Mock("--batch-fault", "invalid:1") as m:
        assert validation_codes(m, lines(2)) == [("invalid_request", None)]
        st, e = m.req("POST", "/v1/messages/batches", {"requests": [areq(0)]})
        assert st == 400 and e["error"]["type"] == "invalid_request_error", e


@test
def fault_expire_expires_lines():
    with Mock("--batch-fault", "expire:0.5") as m:
        b, _ = run_openai(m, lines(40))
        assert b["status"] == "expired" and b["expired_at"], b
        n = b["request_counts"]
        assert n["total"] == 40 and 0 < n["failed"] < 40 and n["completed"] + n["failed"] == 40, n
        err = jsonl(m.req("GET", "/v1/files/%s/content" % b["error_file_id"], raw=True)[1])
        assert len(err) == n["failed"] and all(
            r["error"]["code"] == "batch_expired" and r["response"] is None for r in err), err[0]
        out = jsonl(m.req("GET", "/v1/files/%s/content" % b["output_file_id"], raw=True)[1])
        assert {r["custom_id"] for r in out} | {r["custom_id"] for r in err} == \
            {"r%d" % i for i in range(40)}
        a, _ = run_anthropic(m, [areq(i) for i in range(40)])
        c = a["request_counts"]
        assert 0 < c["expired"] < 40 and c["expired"] + c["succeeded"] == 40, c
        assert sum(r["result"]["type"] == "expired" for r in results(m, a)) == c["expired"]


@test
def fault_expire_by_header_and_line_marker():
    with Mock() as m:
        b, _ = run_openai(m, lines(20), headers={"x-mock-batch-fault": "expire"})
        assert b["status"] == "expired" and 0 < b["request_counts"]["failed"] < 20, b
        b, _ = run_openai(m, (line(0) + "\n" + line(1, content="mock-fault:expire") + "\n").encode())
        assert b["status"] == "expired" and b["request_counts"]["failed"] == 1, b


@test
def fault_fail_fails_the_batch():
    with Mock("--batch-fault", "fail:1") as m:
        b, seen = run_openai(m, lines(10))
        assert b["status"] == "failed" and "in_progress" in seen, seen
        assert b["errors"]["data"][0]["code"] == "batch_failed" and b["output_file_id"] is None, b
        a, _ = run_anthropic(m, [areq(i) for i in range(10)])
        c = a["request_counts"]
        assert c["errored"] >= 5 and c["succeeded"] + c["errored"] == 10, c
        errs = [r["result"] for r in results(m, a) if r["result"]["type"] == "errored"]
        assert errs[0]["error"]["error"]["type"] == "api_error", errs[0]


@test
def fault_429_on_create():
    with Mock("--batch-fault", "429:1") as m:
        st, f = m.upload(lines(1))
        assert st == 200
        st, e, r = m.req("POST", "/v1/batches", {"input_file_id": f["id"], "endpoint":
                                                 "/v1/chat/completions",
                                                 "completion_window": "24h"}, raw=True)
        assert st == 429 and r.getheader("Retry-After") == "1", st
        assert json.loads(e)["error"]["code"] == "rate_limit_exceeded"
        st, e, r = m.req("POST", "/v1/messages/batches", {"requests": [areq(0)]}, raw=True)
        assert st == 429 and json.loads(e)["error"]["type"] == "rate_limit_error", e
        st, s = m.req("GET", "/mock/stats")
        assert s["batch_lines_submitted"] == 0 and s["openai_batches"] == 0, s
    with Mock() as m:
        st, f = m.upload(lines(1))
        st, e = m.create(f["id"], headers={"x-mock-batch-fault": "429"})
        assert st == 429, st


@test
def state_dir_that_cannot_be_used_is_refused():
    with tempfile.NamedTemporaryFile() as t:
        p = subprocess.run([LLMRING, "mock", "--listen", "127.0.0.1:0", "--state-dir", t.name],
                           capture_output=True, text=True, timeout=20)
        assert p.returncode == 2 and "--state-dir" in p.stderr, (p.returncode, p.stderr)


def main():
    global LLMRING
    LLMRING = sys.argv[1]
    passed = failed = 0
    for t in TESTS:
        try:
            t()
            passed += 1
            print("ok   " + t.__name__)
        except Exception:
            failed += 1
            print("FAIL " + t.__name__)
            traceback.print_exc()
    print("%d tests, %d passed, %d failed" % (len(TESTS), passed, failed))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
