"""The cost of pyllmring's response records, without the network: 2,000
completed handles (one batch against URL), then ChatCompletion built and read
over them, best of 5 (docs/benchmarks.md#python).

  PYTHONPATH=build/tools/python /usr/bin/python3 tools/bench/py_records.py http://127.0.0.1:18787/v1
"""
import sys
import time

import pyllmring as llm
from pyllmring._types import ChatCompletion


def best_us(handles, fn, reps=20):
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        best = min(best, (time.perf_counter() - t0) / reps / len(handles) * 1e6)
    return best


def main():
    client = llm.OpenAI(base_url=sys.argv[1])
    rs = client.batch([dict(model="openai/mock", messages=[{"role": "user", "content": "hi"}],
                            max_tokens=50)] * 2000)
    hs = [r._h for r in rs]
    cases = [
        ("ChatCompletion(h, 1, None)", lambda: [ChatCompletion(h, 1, None) for h in hs]),
        ("... .choices[0].message.content",
         lambda: [ChatCompletion(h, 1, None).choices[0].message.content for h in hs]),
        ("... .usage.total_tokens", lambda: [ChatCompletion(h, 1, None).usage.total_tokens
                                             for h in hs]),
        ("h.text (a result field)", lambda: [h.text for h in hs]),
        ("empty loop", lambda: [None for h in hs]),
    ]
    for name, fn in cases:
        print(f"{name}: {best_us(hs, fn):.3f} µs")
    client.close()


if __name__ == "__main__":
    main()
