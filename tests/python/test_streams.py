"""The streaming path of AsyncStream against `llmring mock`: the C wait
(StreamNext and StreamWaiter), Channel.reap resuming the woken streams'
tasks after each round, and the channel's signalling (no eventfd write
while a reap drains; the write made after the mutex). Many streams
interleaved, slow and stopping consumers, a reaper taking a few events per
wake-up, tool calls and the usage chunk, cancellation while waiting,
contextvars, two loops in two threads, uvloop."""

import asyncio
import contextvars
import importlib.util
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time

import pytest

import pyllmring as llm
from pyllmring import _core

LLMRING = os.environ.get("LLMRING_BIN", "llmring")
MSG = [{"role": "user", "content": "Say hello"}]
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]


class Mock:
    def __init__(self, *args):
        self.proc = subprocess.Popen([LLMRING, "mock", "--listen", "127.0.0.1:0", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True)
        line = self.proc.stdout.readline()
        assert line.startswith("listening on "), line
        self.url = line.split()[-1]

    def close(self):
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(10)


@pytest.fixture(scope="module")
def mock():
    m = Mock("--tokens", "30")
    yield m.url
    m.close()


@pytest.fixture(scope="module")
def slow_mock():
    m = Mock("--ttft-ms", "50", "--itl-ms", "5", "--tokens", "40")
    yield m.url
    m.close()


def run(coro):
    return asyncio.run(coro)


async def read_all(s, delay=0.0):
    """Every chunk's text joined, the count of chunks, and the usage chunk."""
    text, n, usage = [], 0, None
    async for c in s:
        n += 1
        if c.choices:
            text.append(c.choices[0].delta.content or "")
        else:
            usage = c.usage
        if delay:
            await asyncio.sleep(delay)
    return "".join(text), n, usage


def test_many_streams_interleaved_in_order(mock):
    """200 streams at once (64 on the wire): each one's chunks, joined, are
    its assembled completion (every delta handed over, in order, before the
    done event), and the usage chunk comes last."""
    async def one(client):
        s = await client.chat.completions.create(model="openai/m", messages=MSG, stream=True,
                                                 stream_options={"include_usage": True})
        text, n, usage = await read_all(s)
        final = await s.get_final_completion()
        return text, n, usage, final

    async def main():
        async with llm.AsyncOpenAI(base_url=mock, max_in_flight=64) as client:
            return await asyncio.gather(*[one(client) for _ in range(200)])
    for text, n, usage, final in run(main()):
        assert text and text == final.choices[0].message.content
        assert usage is not None and usage.completion_tokens == final.usage.completion_tokens
        assert n >= 30


def test_reaper_taking_a_few_per_wake_up(mock):
    """reap_max=1: each round takes one event and the reap stops after its
    rounds with events left; the channel signals itself again, so nothing
    stalls and nothing is lost."""
    async def main():
        async with llm.AsyncOpenAI(base_url=mock, reap_max=1) as client:
            async def one():
                s = await client.chat.completions.create(model="openai/m", messages=MSG,
                                                         stream=True)
                text, _, _ = await read_all(s)
                return text, (await s.get_final_completion()).choices[0].message.content
            return await asyncio.wait_for(asyncio.gather(*[one() for _ in range(50)]), 60)
    for text, final in run(main()):
        assert text and text == final


def test_slow_consumer_beside_fast_ones(slow_mock):
    """A consumer that sleeps after every chunk gets all of them, while fast
    ones beside it finish first."""
    async def main():
        async with llm.AsyncOpenAI(base_url=slow_mock) as client:
            async def one(delay):
                s = await client.chat.completions.create(model="openai/m", messages=MSG,
                                                         stream=True)
                text, n, _ = await read_all(s, delay)
                final = (await s.get_final_completion()).choices[0].message.content
                return text == final, n, time.monotonic()
            return await asyncio.gather(one(0.02), *[one(0) for _ in range(10)])
    (ok, n, t_slow), *fast = run(main())
    assert ok and n >= 40
    assert all(f[0] and f[1] == n for f in fast)
    assert all(f[2] < t_slow for f in fast)


def test_stop_reading_mid_stream_and_close(slow_mock):
    """One consumer stops after 3 chunks and closes (the request is
    cancelled); the others read on to the end."""
    async def main():
        async with llm.AsyncOpenAI(base_url=slow_mock) as client:
            async def quitter():
                s = await client.chat.completions.create(model="openai/m", messages=MSG,
                                                         stream=True)
                got = 0
                async for _ in s:
                    got += 1
                    if got == 3:
                        break
                await s.close()
                # closed: iterating again ends at once
                rest = [c async for c in s]
                return got, rest, s.response.error_name

            async def reader():
                s = await client.chat.completions.create(model="openai/m", messages=MSG,
                                                         stream=True)
                return await read_all(s)
            return await asyncio.gather(quitter(), *[reader() for _ in range(5)])
    (got, rest, err), *readers = run(main())
    assert got == 3 and rest == [] and err == "cancelled"
    assert all(n >= 40 for _, n, _ in readers)


def test_tool_call_stream_and_usage(mock):
    async def main():
        async with llm.AsyncOpenAI(base_url=mock) as client:
            async def one():
                s = await client.chat.completions.create(
                    model="openai/m", messages=MSG, tools=TOOLS, stream=True, max_tokens=32,
                    stream_options={"include_usage": True})
                args, name, usage = "", None, None
                async for c in s:
                    if not c.choices:
                        usage = c.usage
                        continue
                    for tc in c.choices[0].delta.tool_calls or []:
                        name = name or tc.function.name
                        args += tc.function.arguments or ""
                return name, args, usage, await s.get_final_completion()
            return await asyncio.gather(*[one() for _ in range(20)])
    for name, args, usage, final in run(main()):
        assert name == "get_weather" and json.loads(args) == {"city": "Paris", "days": 3}
        assert usage is not None and usage.total_tokens > 0
        assert final.choices[0].message.tool_calls[0].function.name == "get_weather"


def test_cancel_while_waiting_cancels_request(slow_mock):
    """The task waits inside __anext__ (a StreamWaiter): cancelling it
    cancels the request; other streams go on."""
    async def main():
        async with llm.AsyncOpenAI(base_url=slow_mock) as client:
            s = await client.chat.completions.create(model="openai/m", messages=MSG,
                                                     stream=True)
            other = await client.chat.completions.create(model="openai/m", messages=MSG,
                                                         stream=True)
            first = await s.__anext__()
            for _ in range(50):  # until the task is caught waiting (queue empty)
                while s._queued:
                    await s.__anext__()
                t = asyncio.ensure_future(s.__anext__())
                await asyncio.sleep(0)
                await asyncio.sleep(0)
                if not t.done():
                    break
            assert not t.done() and s._waiter is not None
            t.cancel()
            with pytest.raises(asyncio.CancelledError):
                await t
            for _ in range(100):
                if s.response is not None:
                    break
                await asyncio.sleep(0.01)
            return first, s.response.error_name, await read_all(other)
    first, err, (text, n, _) = run(main())
    assert first.choices and err == "cancelled" and text and n >= 40


def test_wait_for_timeout_on_anext(slow_mock):
    """asyncio.wait_for over __anext__ (a task around the awaitable): the
    timeout cancels the wait like any cancellation."""
    async def main():
        async with llm.AsyncOpenAI(base_url=slow_mock) as client:
            s = await client.chat.completions.create(model="openai/m", messages=MSG,
                                                     stream=True)
            with pytest.raises(asyncio.TimeoutError):
                while True:
                    await asyncio.wait_for(s.__anext__(), 0.001)
            await s.close()
            return s.response.error_name
    # 40 chunks 5 ms apart: a 1 ms wait times out long before the end.
    assert run(main()) == "cancelled"


def test_contextvars_kept_across_waits(slow_mock):
    """The reap resumes each task in its own context."""
    var = contextvars.ContextVar("v")

    async def main():
        async with llm.AsyncOpenAI(base_url=slow_mock) as client:
            async def one(k):
                var.set(k)
                s = await client.chat.completions.create(model="openai/m", messages=MSG,
                                                         stream=True)
                seen = set()
                async for _ in s:
                    seen.add(var.get())
                return k, seen
            return await asyncio.gather(*[one(k) for k in range(8)])
    for k, seen in run(main()):
        assert seen == {k}


def test_error_mid_stream_after_deltas(mock):
    async def main():
        async with llm.AsyncOpenAI(base_url=mock, max_retries=0) as client:
            s = await client.chat.completions.create(model="openai/m", messages=MSG, stream=True,
                                                     extra_headers={"x-mock-fault": "stream-error"})
            got = []
            with pytest.raises(llm.APIError):
                async for c in s:
                    got.append(c)
            return got
    assert run(main())


def test_two_loops_in_two_threads_streaming(mock):
    client = llm.AsyncOpenAI(base_url=mock)
    out = {}

    def worker(k):
        async def main():
            async def one():
                s = await client.chat.completions.create(model="openai/m", messages=MSG,
                                                         stream=True)
                text, _, _ = await read_all(s)
                return text == (await s.get_final_completion()).choices[0].message.content
            return await asyncio.gather(*[one() for _ in range(40)])
        out[k] = all(asyncio.run(main()))
    ts = [threading.Thread(target=worker, args=(k,)) for k in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert out == {0: True, 1: True}
    asyncio.run(client.close())


UVLOOP_SCRIPT = """
import asyncio, sys
import uvloop
import pyllmring as llm
MSG = [{"role": "user", "content": "Say hello"}]
async def main(url):
    async with llm.AsyncOpenAI(base_url=url, reap_max=3) as client:
        async def one():
            s = await client.chat.completions.create(model="openai/m", messages=MSG,
                                                     stream=True)
            text = "".join([c.choices[0].delta.content or "" async for c in s if c.choices])
            return text == (await s.get_final_completion()).choices[0].message.content
        return await asyncio.gather(*[one() for _ in range(100)])
loop = uvloop.new_event_loop()
try:
    rs = loop.run_until_complete(main(sys.argv[1]))
finally:
    loop.close()
print(sum(rs))
"""


def test_uvloop_streams(mock):
    if importlib.util.find_spec("uvloop") is None:
        pytest.skip("uvloop is not installed")
    # uvloop 0.17 itself leaves objects behind at exit (see test_api's
    # test_uvloop): under ASan the child's leak check is off, the address
    # checks stay on.
    env = dict(os.environ)
    if "libasan" in env.get("LD_PRELOAD", ""):
        env["ASAN_OPTIONS"] = env.get("ASAN_OPTIONS", "") + ":detect_leaks=0"
    r = subprocess.run([sys.executable, "-c", UVLOOP_SCRIPT, mock], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[-1] == "100"


def test_close_client_mid_stream(slow_mock):
    """client.close() while streams wait: each ends (cancelled) instead of
    hanging."""
    async def main():
        client = llm.AsyncOpenAI(base_url=slow_mock)

        async def one():
            s = await client.chat.completions.create(model="openai/m", messages=MSG,
                                                     stream=True)
            try:
                async for _ in s:
                    pass
            except llm.APIError as e:
                return e.code
            return "end"
        tasks = [asyncio.ensure_future(one()) for _ in range(10)]
        await asyncio.sleep(0.15)
        await client.close()
        return await asyncio.wait_for(asyncio.gather(*tasks), 10)
    assert set(run(main())) <= {"cancelled", "end"}


# ---- the waiter and the channel, directly ------------------------------------------------


def test_stream_waiter_is_a_future_for_tasks():
    async def main():
        loop = asyncio.get_running_loop()
        s = llm.AsyncStream(None, loop, "m", False)
        w = s._new_waiter()
        assert not w.done() and w.get_loop() is loop and s._waiter is w
        with pytest.raises(asyncio.InvalidStateError):
            w.result()
        seen = []
        w.add_done_callback(lambda f: seen.append(("a", f.result())))
        w.add_done_callback(lambda f: seen.append(("b", f.done())))
        t = asyncio.ensure_future(asyncio.shield(asyncio.ensure_future(w_await(w))))
        await asyncio.sleep(0)
        s._wake()                   # resolves it: callbacks through call_soon
        assert w.done() and not w.cancelled() and s._waiter is None
        await asyncio.sleep(0)
        await t
        assert ("a", None) in seen and ("b", True) in seen
        assert w.cancel() is False and w.exception() is None

        w2 = s._new_waiter()
        t2 = asyncio.ensure_future(w_await(w2))
        await asyncio.sleep(0)
        t2.cancel("why")
        with pytest.raises(asyncio.CancelledError):
            await t2
        assert w2.cancelled()
        with pytest.raises(asyncio.CancelledError):
            w2.result()
        cb = seen.append
        w3 = s._new_waiter()
        w3.add_done_callback(cb)
        assert w3.remove_done_callback(cb) == 1
        return True
    assert run(main())


async def w_await(w):
    return await w


def readable(fd):
    return bool(select.select([fd], [], [], 0)[0])


def test_reap_rounds_and_resignal(mock):
    """Channel.reap: max events a round, rounds a call; events left make the
    eventfd readable again; a reap that finds nothing clears it."""
    e = _core.Engine(base_url=mock, api_key="k", max_retries=0)
    ch = _core.Channel()
    loop = asyncio.new_event_loop()
    try:
        futs = [loop.create_future() for _ in range(6)]
        for f in futs:
            e.submit(ch, f, "openai/m", MSG)
        end = time.monotonic() + 10
        while ch.pending() < 6:
            assert time.monotonic() < end
            ch.wait(1)
        assert ch.reap(2, asyncio.Future, 1) == 2
        assert ch.pending() == 4 and readable(ch.fileno())
        assert ch.reap(1, asyncio.Future, 2) == 2 and readable(ch.fileno())
        assert ch.reap(512, asyncio.Future, 16) == 2
        assert ch.pending() == 0 and not readable(ch.fileno())
        assert ch.reap(512, asyncio.Future, 16) == 0 and not readable(ch.fileno())
        assert all(f.done() for f in futs)
        with pytest.raises(TypeError):
            ch.reap(1, asyncio.Future)
    finally:
        loop.close()
        e.close()


def test_streams_freed_without_the_cyclic_gc(mock):
    """A stream read to its end, or closed early, goes (and with it its
    handle and C future, which only it holds) as soon as it is dropped: no
    reference cycle waits for the GC."""
    import gc
    import weakref

    async def main():
        async with llm.AsyncOpenAI(base_url=mock) as client:
            refs = []
            gc.disable()
            try:
                s = await client.chat.completions.create(model="openai/m", messages=MSG,
                                                         stream=True)
                async for _ in s:
                    pass
                refs.append(weakref.ref(s))
                del s, _
                s = await client.chat.completions.create(model="openai/m", messages=MSG,
                                                         stream=True)
                await s.__anext__()
                await s.close()
                refs.append(weakref.ref(s))
                del s
                return [r() is None for r in refs]
            finally:
                gc.enable()
    assert run(main()) == [True, True]
