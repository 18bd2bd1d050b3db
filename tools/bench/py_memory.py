"""Memory per in-flight request: the Python layer above the C engine.

Starts `llmring mock` with a long time to first token, so that every request
submitted stays in flight, and reads this process's resident set
(/proc/self/statm) before and while N requests are in flight, for:
  core     _core.Engine.submit alone (the C engine's request, future and
           connection, plus one small Handle object): the baseline
  gather   AsyncOpenAI, asyncio.gather over N create() coroutines
  batch    AsyncOpenAI.batch over N items
Each mode runs in its own process (a fresh heap). Prints one JSON line per
mode and the per-request difference from `core`.

  PYTHONPATH=build/tools/python /usr/bin/python3 tools/bench/py_memory.py \
      --llmring build/llmring --n 2000
"""
import argparse
import asyncio
import json
import os
import resource
import signal
import subprocess
import sys
import time

PAGE = os.sysconf("SC_PAGE_SIZE")
MSG = [{"role": "user", "content": "Say hello"}]


def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def child(mode, url, n, hold):
    import pyllmring as llm
    from pyllmring import _core
    # Warm-up: a few requests (imports, the first connections, the
    # allocators' first arenas), so that what grows after is the n.
    warm = 16
    if mode == "core":
        e = _core.Engine(base_url=url, api_key="x", max_in_flight=n)
        ch = _core.Channel()
        def wave(k):
            hs = [e.submit(ch, None, "openai/m", MSG, {"max_tokens": 8}) for _ in range(k)]
            return hs
        done = 0
        hs = wave(warm)
        while done < warm:
            ch.wait(None)
            done += len(ch.drain())
        del hs
        before = rss()
        hs = wave(n)
        time.sleep(hold)
        during = rss()
        done = 0
        while done < n:
            ch.wait(None)
            done += len(ch.drain())
        e.close()
        return before, during

    async def main():
        async with llm.AsyncOpenAI(base_url=url, api_key="x", max_in_flight=n) as client:
            create = client.chat.completions.create
            await asyncio.gather(*[create(model="openai/m", messages=MSG, max_tokens=8)
                                   for _ in range(warm)])
            before = rss()
            if mode == "gather":
                task = asyncio.ensure_future(asyncio.gather(*[
                    create(model="openai/m", messages=MSG, max_tokens=8) for _ in range(n)]))
            else:
                task = asyncio.ensure_future(client.batch(
                    [{"messages": MSG, "max_tokens": 8}] * n, model="openai/m"))
            await asyncio.sleep(hold)
            during = rss()
            await task
            return before, during
    return asyncio.run(main())


def main():
    ap = argparse.ArgumentParser(prog="py_memory")
    ap.add_argument("--llmring", required=True)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--ttft-ms", type=int, default=4000)
    ap.add_argument("--mode")
    ap.add_argument("--url")
    a = ap.parse_args()
    hold = a.ttft_ms / 2000.0
    if a.mode:
        before, during = child(a.mode, a.url, a.n, hold)
        print(json.dumps({"mode": a.mode, "n": a.n, "rss_before": before, "rss_during": during,
                          "bytes_per_request": round((during - before) / a.n)}))
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    mock = subprocess.Popen([a.llmring, "mock", "--listen", "127.0.0.1:0", "--ttft-ms",
                             str(a.ttft_ms)], stdout=subprocess.PIPE, text=True)
    url = mock.stdout.readline().split()[-1] + "/v1"
    try:
        out = {}
        for mode in ("core", "gather", "batch"):
            p = subprocess.run([sys.executable, __file__, "--llmring", a.llmring, "--n",
                                str(a.n), "--ttft-ms", str(a.ttft_ms), "--mode", mode,
                                "--url", url], capture_output=True, text=True, check=True)
            r = json.loads(p.stdout)
            out[mode] = r["bytes_per_request"]
            print(p.stdout.strip())
        for mode in ("gather", "batch"):
            print(f"{mode}: {out[mode] - out['core']} bytes per in-flight request above the "
                  f"C engine ({out[mode]} in all, core {out['core']})")
    finally:
        mock.send_signal(signal.SIGINT)
        mock.wait(10)


if __name__ == "__main__":
    main()
