"""pyllmring as a row of ../shared/peers/run_peers.sh (EXTRA_CLIENTS), or on
its own against any OpenAI-compatible server.

Modes (--mode):
  gather     AsyncOpenAI: asyncio.gather over N create() coroutines, as users
             write it (no semaphore: max_in_flight is the concurrency)
  batch      AsyncOpenAI.batch over N requests (one future for all)
  sync       batch_completion (LiteLLM's shape, blocking)
  stream     AsyncOpenAI create(stream=True) and `async for`, N streams,
             gathered (every chunk the stream yields counts as an event, the
             usage chunk with no choice included, as the harness counts them)

Prints the harness's JSON summary line: {"requests", "errors", "chars", "events", ...}.
Example (see docs/benchmarks.md#python):
  EXTRA_CLIENTS="pyllmring|nonstream|PYTHONPATH=build/tools/python /usr/bin/python3 \
    tools/bench/py_llmring.py --url http://@HP@/v1 --body request.json --n @N@"
"""
import argparse
import asyncio
import json
import sys
import time

import pyllmring as llm


def parse():
    ap = argparse.ArgumentParser(prog="py_llmring")
    ap.add_argument("--url", required=True, help="base URL, e.g. http://127.0.0.1:18080/v1")
    ap.add_argument("--body", required=True, help="request JSON file (model, messages, ...)")
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--c", type=int, default=64)
    ap.add_argument("--mode", choices=["gather", "batch", "sync", "stream"], default="gather")
    ap.add_argument("--stream", action="store_true", help="same as --mode stream")
    ap.add_argument("--timeout", type=float, default=300.0)
    a = ap.parse_args()
    if a.stream:
        a.mode = "stream"
    with open(a.body, "rb") as f:
        a.payload = json.load(f)
    a.payload.pop("stream", None)
    a.payload.pop("stream_options", None)
    return a


def kwargs_of(a):
    kw = dict(a.payload)
    kw.setdefault("model", "openai/mock")
    return kw


async def run_gather(a, stats):
    kw = kwargs_of(a)
    async with llm.AsyncOpenAI(base_url=a.url, api_key="x", max_in_flight=a.c) as client:
        create = client.chat.completions.create
        rs = await asyncio.gather(*[create(**kw) for _ in range(a.n)], return_exceptions=True)
    tally(rs, stats)


async def run_batch(a, stats):
    kw = kwargs_of(a)
    async with llm.AsyncOpenAI(base_url=a.url, api_key="x", max_in_flight=a.c) as client:
        rs = await client.batch([kw] * a.n)
    tally(rs, stats)


def run_sync(a, stats):
    kw = kwargs_of(a)
    model = kw.pop("model")
    messages = kw.pop("messages")
    client = llm.OpenAI(base_url=a.url, api_key="x", max_in_flight=a.c)
    rs = client.batch([dict(kw, model=model, messages=messages)] * a.n)
    tally(rs, stats)
    client.close()


async def run_stream(a, stats):
    kw = kwargs_of(a)
    async with llm.AsyncOpenAI(base_url=a.url, api_key="x", max_in_flight=a.c) as client:
        create = client.chat.completions.create

        async def one():
            # The harness's server sends a usage chunk whatever was asked; asking
            # for it makes the stream yield it, as openai-python's does.
            s = await create(stream=True, stream_options={"include_usage": True}, **kw)
            n = chars = 0
            async for chunk in s:
                n += 1
                ch = chunk.choices
                if ch:
                    c = ch[0].delta.content
                    if c:
                        chars += len(c)
            return n, chars
        rs = await asyncio.gather(*[one() for _ in range(a.n)], return_exceptions=True)
    for r in rs:
        stats["done"] += 1
        if isinstance(r, BaseException):
            stats["errors"] += 1
            if stats["errors"] <= 5:
                print("request failed:", repr(r), file=sys.stderr)
        else:
            stats["events"] += r[0]
            stats["chars"] += r[1]


def tally(rs, stats):
    for r in rs:
        stats["done"] += 1
        if isinstance(r, BaseException):
            stats["errors"] += 1
            if stats["errors"] <= 5:
                print("request failed:", repr(r), file=sys.stderr)
        else:
            stats["chars"] += len(r.choices[0].message.content or "")


def main():
    a = parse()
    stats = {"done": 0, "errors": 0, "chars": 0, "events": 0}
    t0 = time.monotonic()
    if a.mode == "sync":
        run_sync(a, stats)
    else:
        fn = {"gather": run_gather, "batch": run_batch, "stream": run_stream}[a.mode]
        asyncio.run(asyncio.wait_for(fn(a, stats), a.timeout))
    wall = time.monotonic() - t0
    print(json.dumps({"client": "pyllmring_" + a.mode, "stream": a.mode == "stream",
                      "mode": a.mode, "requests": stats["done"], "errors": stats["errors"],
                      "chars": stats["chars"], "events": stats["events"],
                      "wall_s": round(wall, 3), "req_per_s": round(stats["done"] / wall, 1)},
                     separators=(",", ":")))
    sys.exit(0 if stats["done"] == a.n and stats["errors"] == 0 else 1)


if __name__ == "__main__":
    main()
