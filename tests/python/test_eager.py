"""create() inside a running loop: the request is sent at once and an asyncio
future comes back (no Task per request), resolved by the reaper with the
response or the exception. These tests pin what every way of waiting for it
gets: gather, ensure_future, wait_for, shield, await, create_task,
TaskGroup, asyncio.run (no loop at call time: a coroutine), cancellation,
errors, close() with some outstanding, and no leak for one never awaited."""
import asyncio
import collections.abc
import gc
import importlib.util
import logging
import os
import signal
import subprocess
import sys
import weakref

import pytest

import pyllmring as llm

LLMRING = os.environ.get("LLMRING_BIN", "llmring")
MSG = [{"role": "user", "content": "Say hello"}]


class Mock:
    """`llmring mock ARGS` as its own process, on a free port."""

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
        self.proc.stdout.close()


@pytest.fixture(scope="module")
def mock():
    m = Mock()
    yield m.url
    m.close()


@pytest.fixture(scope="module")
def slow_mock():
    m = Mock("--ttft-ms", "300")
    yield m.url
    m.close()


def create(client, **kw):
    return client.chat.completions.create(model="openai/m", messages=MSG, **kw)


async def settle(client, failed):
    """Waits until the engine counts `failed` failed requests (a cancel
    reaches it through the reaper's next turn)."""
    for _ in range(200):
        if client.usage()["failed"] >= failed:
            return
        await asyncio.sleep(0.01)


# ---- what create() returns ------------------------------------------------------------------


def test_create_in_a_running_loop_is_a_future_and_a_coroutine(mock):
    async def main():
        async with llm.AsyncOpenAI(base_url=mock) as client:
            f = create(client)
            assert asyncio.isfuture(f) and asyncio.iscoroutine(f)
            assert isinstance(f, collections.abc.Coroutine)
            assert f.get_loop() is asyncio.get_running_loop()
            r = await f
            assert f.done() and f.result() is r
            return r
    r = asyncio.run(main())
    assert isinstance(r, llm.ChatCompletion) and r.choices[0].message.content


def test_the_request_is_sent_when_create_is_called(slow_mock):
    async def main():
        async with llm.AsyncOpenAI(base_url=slow_mock) as client:
            f = create(client)
            await asyncio.sleep(0.5)  # longer than the reply takes: it came meanwhile
            assert f.done()
            return await f
    assert asyncio.run(main()).choices[0].message.content


def test_gather_makes_no_task(mock):
    async def main():
        async with llm.AsyncOpenAI(base_url=mock) as client:
            before = len(asyncio.all_tasks())
            futs = [create(client) for _ in range(50)]
            g = asyncio.gather(*futs)
            during = len(asyncio.all_tasks())
            rs = await g
            return before, during, rs
    before, during, rs = asyncio.run(main())
    assert before == during == 1
    assert all(r.choices[0].message.content for r in rs)


def test_every_way_to_wait(mock):
    async def main():
        async with llm.AsyncOpenAI(base_url=mock) as client:
            out = [await create(client)]
            out.append(await asyncio.ensure_future(create(client)))
            out.append(await asyncio.wait_for(create(client), 10))
            out.append(await asyncio.shield(create(client)))
            out.append(await asyncio.create_task(create(client)))
            out.append(await asyncio.get_running_loop().create_task(create(client)))
            async with asyncio.TaskGroup() as tg:
                t = tg.create_task(create(client))
            out.append(t.result())
            for f in asyncio.as_completed([create(client), create(client)]):
                out.append(await f)

            async def inner():
                return await create(client)
            out.append(await inner())
            return out
    out = asyncio.run(main())
    assert len(out) == 10 and all(isinstance(r, llm.ChatCompletion) for r in out)


def test_asyncio_run_of_create_outside_a_loop(mock):
    client = llm.AsyncOpenAI(base_url=mock)
    try:
        c = create(client)  # no running loop: a coroutine, sent when run
        assert asyncio.iscoroutine(c) and not asyncio.isfuture(c)
        r = asyncio.run(c)
        assert r.choices[0].message.content
        e = asyncio.run(client.embeddings.create(model="openai/text-embedding-3-small",
                                                 input="hi"))
        assert e.data[0].embedding
        t = asyncio.run(client.completions.create(model="openai/m", prompt="Say hi"))
        assert t.choices[0].text
    finally:
        asyncio.run(client.close())


def test_embeddings_and_legacy_completions_are_futures(mock):
    async def main():
        async with llm.AsyncOpenAI(base_url=mock) as client:
            e = client.embeddings.create(model="openai/text-embedding-3-small",
                                         input=["a", "b"])
            t = client.completions.create(model="openai/m", prompt="Say hi")
            assert asyncio.isfuture(e) and asyncio.isfuture(t)
            assert asyncio.iscoroutine(e) and asyncio.iscoroutine(t)
            return await asyncio.gather(e, t)
    e, t = asyncio.run(main())
    assert len(e.data) == 2 and e.data[1].embedding
    assert t.choices[0].text


def test_stream_is_still_a_coroutine(mock):
    async def main():
        async with llm.AsyncOpenAI(base_url=mock) as client:
            c = create(client, stream=True)
            assert asyncio.iscoroutine(c) and not asyncio.isfuture(c)
            s = await c
            return [ch async for ch in s]
    assert asyncio.run(main())


def test_send_and_throw_follow_future_await():
    async def main():
        # The coroutine protocol without the network: a future resolved by hand.
        from pyllmring._client import _Eager
        loop = asyncio.get_running_loop()
        f = _Eager(loop=loop)
        f._h = None
        assert f.send(None) is f  # pending: yields itself, as Future.__await__ does
        f.set_result(42)
        with pytest.raises(StopIteration) as si:
            f.send(None)
        assert si.value.value == 42
        with pytest.raises(ValueError):
            f.throw(ValueError("x"))
        f.close()
    asyncio.run(main())


# ---- errors and cancellation ----------------------------------------------------------------


def test_errors_keep_openai_classes(mock):
    async def main():
        async with llm.AsyncOpenAI(base_url=mock, max_retries=0) as client:
            f = create(client, extra_headers={"x-mock-fault": "401"})
            g = create(client, extra_headers={"x-mock-fault": "429"})
            h = create(client, extra_headers={"x-mock-fault": "500"})
            rs = await asyncio.gather(f, g, h, return_exceptions=True)
            with pytest.raises(llm.AuthenticationError):
                await f  # a failed future raises on every await
            return rs
    rs = asyncio.run(main())
    assert isinstance(rs[0], llm.AuthenticationError) and rs[0].status_code == 401
    assert isinstance(rs[1], llm.RateLimitError)
    assert isinstance(rs[2], llm.InternalServerError)


def test_refused_before_sending_raises_where_awaited(mock):
    async def main():
        client = llm.AsyncOpenAI(base_url=mock)
        await client.close()
        f = create(client)  # no exception here: at the await, as with a coroutine
        assert asyncio.isfuture(f)
        with pytest.raises(llm.ClientClosedError):
            await f
        e = client.embeddings.create(model="openai/e", input="x")
        with pytest.raises(llm.ClientClosedError):
            await e
        t = client.completions.create(model="openai/m", prompt=["a", "b"])
        with pytest.raises(NotImplementedError):
            await t
    asyncio.run(main())


def test_future_cancel_cancels_the_request(slow_mock):
    async def main():
        async with llm.AsyncOpenAI(base_url=slow_mock) as client:
            f = create(client)
            await asyncio.sleep(0.05)
            assert f.cancel() and f.cancelled()
            assert not f.cancel()
            await settle(client, 1)
            return client.usage()
    usage = asyncio.run(main())
    assert usage["failed"] == 1 and usage["succeeded"] == 0  # ended cancelled, before the reply


def test_task_cancel_cancels_the_request(slow_mock):
    async def main():
        async with llm.AsyncOpenAI(base_url=slow_mock) as client:
            t = asyncio.create_task(create(client))
            await asyncio.sleep(0.05)
            t.cancel()
            with pytest.raises(asyncio.CancelledError):
                await t

            async def inner():
                return await create(client)
            t2 = asyncio.create_task(inner())
            await asyncio.sleep(0.05)
            t2.cancel()
            with pytest.raises(asyncio.CancelledError):
                await t2
            await settle(client, 2)
            return client.usage()
    usage = asyncio.run(main())
    assert usage["failed"] == 2 and usage["succeeded"] == 0


def test_wait_for_timeout_cancels_the_request(slow_mock):
    async def main():
        async with llm.AsyncOpenAI(base_url=slow_mock) as client:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(create(client), 0.05)
            await settle(client, 1)
            return client.usage()
    usage = asyncio.run(main())
    assert usage["failed"] == 1 and usage["succeeded"] == 0


def test_cancelled_gather_cancels_every_request(slow_mock):
    async def main():
        async with llm.AsyncOpenAI(base_url=slow_mock) as client:
            g = asyncio.gather(*[create(client) for _ in range(20)])
            await asyncio.sleep(0.05)
            g.cancel()
            with pytest.raises(asyncio.CancelledError):
                await g
            await settle(client, 20)
            return client.usage()
    usage = asyncio.run(main())
    assert usage["failed"] == 20 and usage["succeeded"] == 0


def test_close_with_outstanding_futures(slow_mock, caplog):
    async def main():
        client = llm.AsyncOpenAI(base_url=slow_mock)
        futs = [create(client) for _ in range(20)]
        forgotten = [create(client) for _ in range(5)]  # never awaited
        refs = [weakref.ref(f) for f in forgotten]
        del forgotten
        await asyncio.sleep(0.05)
        await asyncio.wait_for(client.close(), 10)  # does not hang on them
        res = await asyncio.gather(*futs, return_exceptions=True)
        return res, refs
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        res, refs = asyncio.run(main())
        gc.collect()
    assert all(isinstance(e, llm.ClientClosedError) and e.code == "cancelled" for e in res)
    assert all(r() is None for r in refs)  # freed once resolved: no cycle left behind
    assert "never retrieved" not in caplog.text


def test_never_awaited_future_is_freed(mock):
    async def main():
        async with llm.AsyncOpenAI(base_url=mock) as client:
            refs = [weakref.ref(create(client)) for _ in range(100)]
            for _ in range(200):
                if client.usage()["requests"] >= 100 and client.usage()["succeeded"] >= 100:
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)  # the reaper's turn
            return refs
    gc.disable()  # by reference count alone: the future and handle keep no cycle
    try:
        refs = asyncio.run(main())
    finally:
        gc.enable()
    assert all(r() is None for r in refs)


def test_gc_tracking_of_the_future(slow_mock):
    """Out of the cyclic GC while in flight and once resolved with a
    response (it can be in no cycle then); tracked when it fails or is
    cancelled (a traceback can reach it) and once anything is stored on it."""
    async def main():
        async with llm.AsyncOpenAI(base_url=slow_mock, max_retries=0) as client:
            f = create(client)
            pending = gc.is_tracked(f)
            await f
            resolved = gc.is_tracked(f)
            f.note = "x"
            stored = gc.is_tracked(f)
            bad = create(client, extra_headers={"x-mock-fault": "401"})
            with pytest.raises(llm.AuthenticationError):
                await bad
            c = create(client)
            c.cancel()
            await settle(client, 2)
            await asyncio.sleep(0.05)
            return pending, resolved, stored, gc.is_tracked(bad), gc.is_tracked(c)
    assert asyncio.run(main()) == (False, False, True, True, True)


def test_a_cycle_through_a_stored_attribute_is_collected(mock):
    async def main():
        async with llm.AsyncOpenAI(base_url=mock) as client:
            f = create(client)
            r = await f
            f.me = [f]  # a cycle, seen by the GC once stored
            return weakref.ref(f), weakref.ref(r)
    fr, rr = asyncio.run(main())
    gc.collect()
    assert fr() is None and rr() is None


# ---- scale and loops ------------------------------------------------------------------------


def test_10000_concurrent_futures_from_one_loop(mock):
    async def main():
        async with llm.AsyncOpenAI(base_url=mock, max_in_flight=256) as client:
            futs = [create(client, max_tokens=4) for _ in range(10000)]
            rs = await asyncio.gather(*futs)
            return rs, client.usage()
    rs, usage = asyncio.run(main())
    assert len(rs) == 10000 and all(r.choices[0].message.content for r in rs)
    assert usage["succeeded"] == 10000


UVLOOP_SCRIPT = """
import asyncio, sys
import uvloop
import pyllmring as llm
MSG = [{"role": "user", "content": "Say hello"}]
def create(client):
    return client.chat.completions.create(model="openai/m", messages=MSG)
async def main(url, slow_url):
    async with llm.AsyncOpenAI(base_url=url) as client:
        f = create(client)
        assert asyncio.isfuture(f) and asyncio.iscoroutine(f)
        rs = await asyncio.gather(f, *[create(client) for _ in range(300)])
    async with llm.AsyncOpenAI(base_url=slow_url) as client:
        try:
            await asyncio.wait_for(create(client), 0.05)
            raise AssertionError("no timeout")
        except asyncio.TimeoutError:
            pass
        t = asyncio.create_task(create(client))
        await asyncio.sleep(0.02)
        t.cancel()
        try:
            await t
            raise AssertionError("not cancelled")
        except asyncio.CancelledError:
            pass
        for _ in range(200):
            if client.usage()["failed"] >= 2:
                break
            await asyncio.sleep(0.01)
        return len(rs), client.usage()["failed"]
loop = uvloop.new_event_loop()
try:
    print(*loop.run_until_complete(main(sys.argv[1], sys.argv[2])))
finally:
    loop.close()
"""


def test_uvloop_futures(mock, slow_mock):
    if importlib.util.find_spec("uvloop") is None:  # not imported here: see test_api's
        pytest.skip("uvloop is not installed")
    # In a child: uvloop 0.17 leaves objects behind at exit, which
    # LeakSanitizer reports; the child's leak check is off (as test_api's).
    env = dict(os.environ)
    if "libasan" in env.get("LD_PRELOAD", ""):
        env["ASAN_OPTIONS"] = env.get("ASAN_OPTIONS", "") + ":detect_leaks=0"
    p = subprocess.run([sys.executable, "-c", UVLOOP_SCRIPT, mock, slow_mock], env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["301", "2"]


def test_two_loops_in_two_threads(mock):
    import threading
    client = llm.AsyncOpenAI(base_url=mock)
    out = {}

    def worker(i):
        async def main():
            return await asyncio.gather(*[create(client) for _ in range(100)])
        out[i] = asyncio.run(main())
    ts = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    asyncio.run(client.close())
    assert len(out[0]) == len(out[1]) == 100


# ---- the window: at most `window` of a loop's create() requests in the engine ---------------


def window_of(client):
    return client._core.reapers[asyncio.get_running_loop()].window


def test_beyond_the_window_requests_wait_built_and_all_complete(slow_mock):
    async def main():
        async with llm.AsyncOpenAI(base_url=slow_mock, max_in_flight=128) as client:
            limit = client._core.window
            msgs = [{"role": "user", "content": "hi"}]
            futs = [create(client) for _ in range(limit + 40)]
            last = client.chat.completions.create(model="openai/m", messages=msgs)
            w = window_of(client)
            counts = (w.in_engine, w.waiting)
            msgs[0]["content"] = "hi " * 50  # after create(): not what was sent
            rs = await asyncio.gather(*futs, last)
            return limit, counts, rs, (w.in_engine, w.waiting), client.usage()
    limit, counts, rs, after, usage = asyncio.run(main())
    assert counts == (limit, 41) and after == (0, 0)
    assert all(r.choices[0].message.content for r in rs)
    assert rs[-1].usage.prompt_tokens == 1  # built when create() was called
    assert usage["succeeded"] == limit + 41


def test_cancelled_while_waiting_is_never_sent(slow_mock):
    async def main():
        async with llm.AsyncOpenAI(base_url=slow_mock, max_in_flight=128) as client:
            limit = client._core.window
            futs = [create(client) for _ in range(limit + 10)]
            waiting = futs[limit:]
            for f in waiting:
                assert f.cancel()
            rs = await asyncio.gather(*futs[:limit])
            for f in waiting:
                with pytest.raises(asyncio.CancelledError):
                    await f
            return limit, rs, window_of(client).waiting, client.usage()
    limit, rs, waiting, usage = asyncio.run(main())
    assert len(rs) == limit and waiting == 0
    assert usage["requests"] == limit and usage["failed"] == 0


def test_close_fails_the_waiting_ones(slow_mock, caplog, capfd):
    async def main():
        client = llm.AsyncOpenAI(base_url=slow_mock, max_in_flight=128)
        limit = client._core.window
        futs = [create(client) for _ in range(limit + 30)]
        futs.pop().cancel()  # cancelled while waiting: close() leaves it cancelled
        forgotten = [create(client) for _ in range(5)]
        refs = [weakref.ref(f) for f in forgotten]
        del forgotten
        await asyncio.sleep(0.05)
        await asyncio.wait_for(client.close(), 10)
        res = await asyncio.gather(*futs, return_exceptions=True)
        return res, refs
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        res, refs = asyncio.run(main())
        gc.collect()
    assert all(isinstance(e, llm.ClientClosedError) and e.code == "cancelled" for e in res)
    assert all(r() is None for r in refs)
    assert "never retrieved" not in caplog.text
    assert "Exception ignored" not in capfd.readouterr().err


def test_window_memory_follows_the_window_not_n(mock):
    """gather over many more calls than the window: the engine holds at
    most `window` of them, and every one completes."""
    async def main():
        async with llm.AsyncOpenAI(base_url=mock, max_in_flight=16) as client:
            futs = [create(client, max_tokens=2) for _ in range(3000)]
            w = window_of(client)
            peak = w.in_engine
            rs = await asyncio.gather(*futs)
            return client._core.window, peak, rs
    limit, peak, rs = asyncio.run(main())
    assert peak == limit and len(rs) == 3000
