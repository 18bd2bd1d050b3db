"""Python function calls per batch item: cProfile's totals over N items
minus one item's, divided by N - 1 (the noise-free figure for the Python
left per item; wall-clock and CPU timings are not).

  PYTHONPATH=build/tools/python /usr/bin/python3 tools/bench/py_calls_per_item.py \
      http://127.0.0.1:PORT/v1 batch|sync|batch_completion|as_completed [N]

against `llmring mock --listen 127.0.0.1:PORT`. The script's own per-item
call is as_completed's list.append (1 per item)."""
import cProfile, pstats, sys, asyncio
import pyllmring as llm
url, mode = sys.argv[1], sys.argv[2]
n = int(sys.argv[3]) if len(sys.argv) > 3 else 20000
MSG = [{"role": "user", "content": "hi"}]
def go(n):
    if mode == "batch_completion":
        return llm.batch_completion(model="gpt-4o-mini", messages=[MSG] * n, api_base=url, api_key="x")
    if mode == "sync":
        c = llm.OpenAI(base_url=url, api_key="x")
        try:
            return c.batch([{"model": "gpt-4o-mini", "messages": MSG}] * n)
        finally:
            c.close()
    async def main():
        async with llm.AsyncOpenAI(base_url=url, api_key="x") as c:
            if mode == "batch":
                return await c.batch([{"model": "gpt-4o-mini", "messages": MSG}] * n)
            out = []
            async for p in c.as_completed([{"model": "gpt-4o-mini", "messages": MSG}] * n):
                out.append(p)
            return out
    return asyncio.run(main())
go(10)  # warm: imports, the default client
tot = []
for k in (1, n):
    pr = cProfile.Profile(); pr.enable(); rs = go(k); pr.disable()
    assert len(rs) == k
    tot.append(pstats.Stats(pr).total_calls)
print(f"{mode}: {(tot[1] - tot[0]) / (n - 1):.2f} calls/item ({tot[0]} for 1 item, {tot[1]} for {n})")
