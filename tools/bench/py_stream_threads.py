"""Runs tools/bench/py_llmring.py (any mode, same arguments) and prints, on
stderr, each thread's CPU time and context switches from the client's
creation to its close (/proc/self/task/*/schedstat and status), and per
event for the stream mode (51 events a stream on the peers' nginx):
start-up and import left out, the loop's thread apart from the engine's.

  PYTHONPATH=build/tools/python python3 tools/bench/py_stream_threads.py \\
    --url http://127.0.0.1:18080/v1/stream --body request.json --n 2000 --mode stream
Environment: EVENTS=51 (events per stream, for the per-event figures).
"""
import os
import runpy
import sys

import pyllmring

HERE = os.path.dirname(os.path.abspath(__file__))


def threads():
    """{name:tid: (cpu ms, voluntary, involuntary switches)} of this process."""
    out = {}
    for t in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{t}/comm") as f:
                name = f.read().strip()
            with open(f"/proc/self/task/{t}/schedstat") as f:
                ns = int(f.read().split()[0])
            with open(f"/proc/self/task/{t}/status") as f:
                st = f.read()
        except OSError:
            continue  # the thread ended meanwhile
        v = int(st.split("voluntary_ctxt_switches:")[1].split()[0])
        nv = int(st.split("nonvoluntary_ctxt_switches:")[1].split()[0])
        out[name + ":" + t] = (ns / 1e6, v, nv)
    return out


start, delta = {}, {}
orig_init, orig_close = pyllmring.AsyncOpenAI.__init__, pyllmring.AsyncOpenAI.close


def init(self, *a, **k):
    start.update(threads())
    orig_init(self, *a, **k)


async def close(self):
    for k, v in threads().items():
        b = start.get(k, (0, 0, 0))
        delta[k.split(":")[0]] = tuple(x - y for x, y in zip(v, b))
    return await orig_close(self)


pyllmring.AsyncOpenAI.__init__, pyllmring.AsyncOpenAI.close = init, close
sys.argv = [os.path.join(HERE, "py_llmring.py")] + sys.argv[1:]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
finally:
    n = int(sys.argv[sys.argv.index("--n") + 1]) if "--n" in sys.argv else 20000
    events = n * int(os.environ.get("EVENTS", "51"))
    for name, (ms, v, nv) in sorted(delta.items()):
        print(f"{name}: {ms:.0f} ms, {v} voluntary / {nv} involuntary switches, "
              f"{ms * 1e3 / events:.2f} us per event", file=sys.stderr)
