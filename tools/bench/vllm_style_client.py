#!/usr/bin/python3
"""A streamed chat benchmark client written the way vLLM's is, to compare llmring bench with.

Its request function follows vLLM's `async_request_openai_chat_completions`
(vllm/benchmarks/lib/endpoint_request_func.py) step for step: one aiohttp POST
with stream_options.include_usage, the body read with `iter_any()` and split
into SSE messages on blank lines (vLLM's StreamedResponseHandler), a
time.perf_counter() stamp per data message, TTFT at the first message with
non-empty choices, ITL the gaps between later choice messages, latency at the
most recent choice timestamp, output tokens from the usage message. The loop
is vLLM's closed one: every request is a task up front, gated by a semaphore of
--concurrency (`--max-concurrency`), on one session whose connector has the
same limit. The metrics are calculate_metrics' (TPOT = (latency - ttft) /
(output_tokens - 1) for requests with more than one token; numpy's linear
percentiles, written out here because Debian's python3-aiohttp does not bring
numpy).

--warmup N leaves the first N requests out of the figures without draining them
first (as llmring bench's --warmup); --range-ratio R draws each request's
max_completion_tokens from vLLM's [int(X (1 - R)), int(X (1 + R))]; --ignore-eos
sends vLLM's ignore_eos.

It prints one JSON object: the figures, the SSE messages parsed, the wall time
and the process's own CPU (getrusage), so that the cost per event of the
client can be set beside llmring bench's.
"""
import argparse
import asyncio
import codecs
import json
import random
import resource
import sys
import time

import aiohttp


class StreamedResponseHandler:
    """vLLM's: accumulate bytes, hand out complete SSE messages."""

    def __init__(self):
        self.buffer = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")()

    def add_chunk(self, chunk_bytes):
        self.buffer += self._decoder.decode(chunk_bytes)
        messages = []
        while "\n\n" in self.buffer:
            message, self.buffer = self.buffer.split("\n\n", 1)
            message = message.strip()
            if message:
                messages.append(message)
        if self.buffer.startswith("data: "):
            content = self.buffer.removeprefix("data: ").strip()
            if content == "[DONE]":
                messages.append(self.buffer.strip())
                self.buffer = ""
            elif content:
                try:
                    json.loads(content)
                    messages.append(self.buffer.strip())
                    self.buffer = ""
                except json.JSONDecodeError:
                    pass
        return messages


class Output:
    __slots__ = ("success", "latency", "output_tokens", "ttft", "itl", "error",
                 "messages", "choice_events", "start")

    def __init__(self):
        self.start = 0.0
        self.success = False
        self.latency = 0.0
        self.output_tokens = 0
        self.ttft = 0.0
        self.itl = []
        self.error = ""
        self.messages = 0       # data messages parsed as JSON (choices and usage)
        self.choice_events = 0  # of them, the ones with choices: TTFT's and ITL's


async def request_chat(session, url, payload, headers):
    out = Output()
    st = time.perf_counter()
    out.start = st
    most_recent_timestamp = st
    generated_text = ""
    try:
        async with session.post(url=url, json=payload, headers=headers) as response:
            if response.status == 200:
                first_chunk_received = False
                handler = StreamedResponseHandler()
                async for chunk_bytes in response.content.iter_any():
                    chunk_bytes = chunk_bytes.strip()
                    if not chunk_bytes:
                        continue
                    for message in handler.add_chunk(chunk_bytes):
                        if message.startswith(":"):
                            continue
                        chunk = message.removeprefix("data: ")
                        if chunk != "[DONE]":
                            timestamp = time.perf_counter()
                            data = json.loads(chunk)
                            out.messages += 1
                            if choices := data.get("choices"):
                                content = choices[0]["delta"].get("content")
                                out.choice_events += 1
                                if not first_chunk_received:
                                    first_chunk_received = True
                                    out.ttft = timestamp - st
                                else:
                                    out.itl.append(timestamp - most_recent_timestamp)
                                generated_text += content or ""
                                most_recent_timestamp = timestamp
                            elif usage := data.get("usage"):
                                out.output_tokens = usage.get("completion_tokens")
                out.success = first_chunk_received
                if not first_chunk_received:
                    out.error = "no choice chunk"
                out.latency = most_recent_timestamp - st
            else:
                out.error = f"http {response.status}"
    except Exception as e:  # vLLM records the error and goes on
        out.error = repr(e)
    return out


def percentile(sorted_xs, p):
    """numpy.percentile's default (linear) on an already sorted list."""
    if not sorted_xs:
        return 0.0
    h = (len(sorted_xs) - 1) * p / 100.0
    lo = int(h)
    hi = min(lo + 1, len(sorted_xs) - 1)
    return sorted_xs[lo] + (sorted_xs[hi] - sorted_xs[lo]) * (h - lo)


def stat_ms(xs):
    xs = sorted(x * 1000.0 for x in xs)
    if not xs:
        return {"count": 0, "mean": 0.0, "median": 0.0, "p99": 0.0}
    return {"count": len(xs), "mean": sum(xs) / len(xs), "median": percentile(xs, 50),
            "p99": percentile(xs, 99)}


def random_prompt(rng, words):
    # About one token per word, as llmring bench's random dataset makes them.
    vocab = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
             "india", "juliet", "kilo", "lima", "mike", "november", "oscar", "papa"]
    return " ".join(rng.choice(vocab) for _ in range(words))


async def run(a):
    url = a.base_url.rstrip("/") + "/chat/completions"
    headers = {"Content-Type": "application/json", "Authorization": "Bearer x"}
    rng = random.Random(a.seed)
    payloads = []
    lo = max(1, int(a.max_tokens * (1 - a.range_ratio)))
    hi = max(lo, int(a.max_tokens * (1 + a.range_ratio)))
    for _ in range(a.warmup + a.requests):
        body = {
            "model": a.model,
            "messages": [{"role": "user", "content": [
                {"type": "text", "text": random_prompt(rng, a.prompt_tokens)}]}],
            "max_completion_tokens": rng.randint(lo, hi) if a.range_ratio > 0 else a.max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if a.ignore_eos:
            body["ignore_eos"] = True
        payloads.append(body)
    # serve.py's connector and session, with --max-concurrency as the limit.
    connector = aiohttp.TCPConnector(limit=a.concurrency, limit_per_host=a.concurrency,
                                     ttl_dns_cache=300, use_dns_cache=True,
                                     keepalive_timeout=60, enable_cleanup_closed=True,
                                     force_close=False)
    timeout = aiohttp.ClientTimeout(total=6 * 60 * 60)
    semaphore = asyncio.Semaphore(a.concurrency)

    async def limited(session, payload):
        async with semaphore:
            return await request_chat(session, url, payload, headers)

    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout,
                                     trust_env=True) as session:
        tasks = [asyncio.create_task(limited(session, p)) for p in payloads]
        outputs = await asyncio.gather(*tasks)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    # Tasks start in order: the first --warmup are the warm-up.
    return outputs[a.warmup:], wall, r0, r1


def main():
    ap = argparse.ArgumentParser(prog="vllm_style_client")
    ap.add_argument("--base-url", required=True, help="e.g. http://127.0.0.1:8000/v1")
    ap.add_argument("--model", default="m")
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=100)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--prompt-tokens", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--warmup", type=int, default=0)
    ap.add_argument("--range-ratio", type=float, default=0.0)
    ap.add_argument("--ignore-eos", action="store_true")
    ap.add_argument("--json", help="write the summary here too")
    a = ap.parse_args()

    outputs, wall, r0, r1 = asyncio.run(run(a))
    ok = [o for o in outputs if o.success]
    ttfts = [o.ttft for o in ok]
    tpots = [(o.latency - o.ttft) / (o.output_tokens - 1) for o in ok
             if o.output_tokens and o.output_tokens > 1]
    itls = [x for o in ok for x in o.itl]
    cpu_user = r1.ru_utime - r0.ru_utime
    cpu_sys = r1.ru_stime - r0.ru_stime
    cpu = cpu_user + cpu_sys
    messages = sum(o.messages for o in outputs)
    choice_events = sum(o.choice_events for o in outputs)
    # The first --concurrency requests open the connections; the rest reuse them.
    by_start = sorted(ok, key=lambda o: o.start)
    first_wave = [o.ttft for o in by_start[:a.concurrency]]
    rest = [o.ttft for o in by_start[a.concurrency:]]
    errors = {}
    for o in outputs:
        if not o.success:
            errors[o.error[:80]] = errors.get(o.error[:80], 0) + 1
    summary = {
        "client": "vllm_style_aiohttp",
        "aiohttp": aiohttp.__version__,
        "requests": len(outputs), "completed": len(ok), "failed": len(outputs) - len(ok),
        "errors": errors,
        "concurrency": a.concurrency,
        "ttft_ms": stat_ms(ttfts), "tpot_ms": stat_ms(tpots), "itl_ms": stat_ms(itls),
        "e2el_ms": stat_ms([o.latency for o in ok]),
        "ttft_ms_new_conn_mean": stat_ms(first_wave)["mean"],
        "ttft_ms_reused_conn_mean": stat_ms(rest)["mean"],
        "total_output_tokens": sum(o.output_tokens or 0 for o in ok),
        "messages_parsed": messages,
        "choice_events": choice_events,
        "wall_s": wall,
        "client_cpu_s": cpu, "client_cpu_user_s": cpu_user, "client_cpu_sys_s": cpu_sys,
        "client_cpu_share": cpu / wall if wall > 0 else 0.0,
    }
    text = json.dumps(summary, indent=1)
    print(text)
    if a.json:
        with open(a.json, "w") as f:
            f.write(text + "\n")
    sys.exit(0 if not summary["failed"] else 1)


if __name__ == "__main__":
    main()
