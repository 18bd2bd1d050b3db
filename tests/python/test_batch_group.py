"""The batch group in C (_core_group.c): client.batch, as_completed,
batch_completion and abatch_completion keep input order, put exceptions in
place, queue beyond the engine's concurrency, honour cancellation and
close(), yield each outcome once, and leave no cycles; and batch_price()."""
import asyncio
import gc
import threading

import pytest

import pyllmring as llm
from pyllmring import _core

from conftest import MockServer

USER = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def url():
    m = MockServer("--tokens", "20")
    yield m.url
    m.close()


@pytest.fixture(scope="module")
def slow_url():
    m = MockServer("--ttft-ms", "150", "--tokens", "4")
    yield m.url
    m.close()


def run(coro):
    return asyncio.run(coro)


def tokens(i):
    """Item i asks for this many tokens: its reply's usage names the item."""
    return i % 15 + 1


def mixed_items(n):
    """n items; some refused in place (TypeError, ValueError), some failing
    at the server, some through the Python path (per-call options)."""
    out = []
    for i in range(n):
        if i % 97 == 5:
            out.append({"messages": "not a list"})
        elif i % 97 == 6:
            out.append({"messages": USER, "stream": True})
        elif i % 97 == 7:
            out.append({"messages": [{"role": "user", "content": "x mock-fault:400"}],
                        "max_retries": 0})
        elif i % 97 == 8:
            out.append({"messages": USER, "extra_headers": {"x-mock-fault": "404"},
                        "max_retries": 0})
        elif i % 2:
            out.append({"messages": USER, "max_tokens": tokens(i), "timeout": 60})  # Python path
        else:
            out.append({"messages": USER, "max_tokens": tokens(i)})
    return out


def check_mixed(rs, n):
    assert len(rs) == n
    for i, r in enumerate(rs):
        k = i % 97
        if k == 5:
            assert isinstance(r, TypeError), (i, r)
        elif k == 6:
            assert isinstance(r, ValueError) and "stream" in str(r)
        elif k == 7:
            assert isinstance(r, llm.BadRequestError), (i, r)
        elif k == 8:
            assert isinstance(r, llm.NotFoundError), (i, r)
        else:
            assert r.usage.completion_tokens == tokens(i), (i, r)


def test_batch_order_and_errors_in_place_async_and_sync(url):
    async def main():
        async with llm.AsyncOpenAI(base_url=url, max_in_flight=8) as client:
            return await client.batch(iter(mixed_items(1000)), model="openai/m")
    check_mixed(run(main()), 1000)
    with llm.OpenAI(base_url=url, max_in_flight=8) as client:
        check_mixed(client.batch(mixed_items(1000), model="openai/m"), 1000)


def test_batch_10000_items_queue_beyond_concurrency(url):
    """10,000 items on 4 slots: the engine queues, every outcome at its index."""
    async def main():
        async with llm.AsyncOpenAI(base_url=url, max_in_flight=4) as client:
            items = ([{"role": "user", "content": f"q{i}"}] for i in range(10_000))
            rs = await client.batch(items, model="openai/m")
            return rs, client.usage()
    rs, usage = run(main())
    assert len(rs) == 10_000 and usage["requests"] == 10_000
    assert all(r.choices[0].message.content for r in rs)


def test_batch_completion_shapes(url):
    """batch_completion's kwargs with every item: order, errors in place;
    options in kwargs (the Python path) and messages that are response
    objects too."""
    msgs = [[{"role": "user", "content": "n" + (" mock-fault:400" if i % 13 == 3 else "")}]
            for i in range(300)]
    rs = llm.batch_completion(model="openai/m", messages=msgs, api_base=url, max_retries=0,
                              max_tokens=7)
    assert len(rs) == 300
    for i, r in enumerate(rs):
        if i % 13 == 3:
            assert isinstance(r, llm.BadRequestError)
        else:
            assert r.usage.completion_tokens == 7
    # No per-call option: the C path with the common kwargs.
    rs = llm.batch_completion(model="openai/m", api_base=url, temperature=0.5,
                              messages=(USER for _ in range(50)))
    assert len(rs) == 50 and all(r.choices[0].message.content for r in rs)
    # A reply appended to a history: a response object among the messages.
    first = rs[0].choices[0].message
    rs = llm.batch_completion(model="openai/m", api_base=url,
                              messages=[USER + [first, {"role": "user", "content": "more"}],
                                        "not messages", USER])
    assert rs[0].choices[0].message.content and rs[2].choices[0].message.content
    assert isinstance(rs[1], TypeError)

    async def main():
        return await llm.abatch_completion(model="openai/m", api_base=url, max_tokens=3,
                                           messages=[USER] * 40)
    rs = run(main())
    assert len(rs) == 40 and all(r.usage.completion_tokens == 3 for r in rs)


def test_as_completed_yields_each_once(url):
    async def main():
        async with llm.AsyncOpenAI(base_url=url, max_in_flight=16) as client:
            seen = {}
            async for i, r in client.as_completed(mixed_items(10_000), model="openai/m"):
                assert i not in seen
                seen[i] = r
            return seen
    seen = run(main())
    assert sorted(seen) == list(range(10_000))
    check_mixed([seen[i] for i in range(10_000)], 10_000)


def test_as_completed_iterator_failure_raises(url):
    def items():
        for i in range(100):
            if i == 40:
                raise KeyError("ran out")
            yield USER

    async def main():
        async with llm.AsyncOpenAI(base_url=url) as client:
            got = []
            with pytest.raises(KeyError):
                async for i, r in client.as_completed(items(), model="openai/m"):
                    got.append(i)
            return got
    got = run(main())
    assert len(got) <= 40 and len(set(got)) == len(got)


class Counting:
    def __init__(self, n):
        self.n, self.taken = n, 0

    def __iter__(self):
        for i in range(self.n):
            self.taken += 1
            yield [{"role": "user", "content": f"c{i}"}]


def test_cancel_mid_batch(slow_url):
    """Cancelling the awaiting task cancels what is in the engine and takes
    no further items; the client keeps serving."""
    async def main():
        async with llm.AsyncOpenAI(base_url=slow_url, max_in_flight=8) as client:
            window = client._core.window
            items = Counting(100_000)
            t = asyncio.create_task(client.batch(items, model="openai/m"))
            await asyncio.sleep(0.4)
            t.cancel()
            with pytest.raises(asyncio.CancelledError):
                await t
            taken = items.taken
            await asyncio.sleep(0.4)  # the cancelled ones complete meanwhile
            r = await client.chat.completions.create(model="openai/m", messages=USER)
            return window, taken, items.taken, r
    window, taken, later, r = run(main())
    assert 0 < taken < 100_000 and later == taken
    assert taken <= 4 * window  # a few refills at most, never the input
    assert r.choices[0].message.content


def test_close_with_batch_outstanding(slow_url):
    """close() while a batch runs: the batch still returns one outcome per
    item, the outstanding and the not yet taken as ClientClosedError."""
    async def main():
        client = llm.AsyncOpenAI(base_url=slow_url, max_in_flight=8)
        t = asyncio.create_task(client.batch([USER] * 2000, model="openai/m"))
        await asyncio.sleep(0.4)
        await client.close()
        return await asyncio.wait_for(t, 30)
    rs = run(main())
    assert len(rs) == 2000
    done = [r for r in rs if not isinstance(r, Exception)]
    closed = [r for r in rs if isinstance(r, llm.ClientClosedError)]
    assert len(done) + len(closed) == 2000 and closed and closed[-1].code == "cancelled"


def test_sync_batch_closed_from_another_thread(slow_url):
    client = llm.OpenAI(base_url=slow_url, max_in_flight=8)
    threading.Timer(0.4, client._core.close_engine).start()
    rs = client.batch([USER] * 2000, model="openai/m")
    assert len(rs) == 2000
    assert all(isinstance(r, llm.ClientClosedError) or r.choices for r in rs)
    assert isinstance(rs[-1], llm.ClientClosedError)
    client.close()


def test_no_cycles_left(url):
    """The slot breaks the handle / group cycle at completion: nothing of a
    batch waits for the cyclic collector."""
    gc.collect()
    gc.disable()
    try:
        with llm.OpenAI(base_url=url) as client:
            rs = client.batch([USER] * 500, model="openai/m")
            assert len(rs) == 500
            del rs
            left = [o for o in gc.get_objects()
                    if type(o) in (_core.BatchSlot, _core.BatchGroup)]
            assert left == []
    finally:
        gc.enable()


def test_group_direct_use(url):
    """The C group on its own: bad arguments, a done slot given twice, and
    the ready FIFO."""
    with pytest.raises(TypeError):
        _core.BatchGroup()
    client = llm.OpenAI(base_url=url)
    core = client._core
    chan = core.sync_channel()
    with pytest.raises(ValueError):
        _core.BatchGroup(core, core.engine, chan, [], None, None, 0)
    with pytest.raises(TypeError):
        _core.BatchGroup(core, core.engine, chan, 5, None, None, 8)
    with pytest.raises(TypeError):
        _core.BatchGroup(core, core.engine, chan, [], None, None, 8, False, [1])
    g = _core.BatchGroup(core, core.engine, chan, [USER] * 3, "openai/m", None, 2, True)
    g.fill()
    assert g.live == 2 and g.pending and g.ready == 0
    # Outcomes not taken yet hold the window: the third item waits for them.
    core.wait_sync(chan, lambda: g.ready < 2)
    assert g.live == 0 and g.pending and g.ready == 2
    pairs = list(g)
    assert list(g) == [] and g.ready == 0
    g.fill()
    assert g.live == 1
    core.wait_sync(chan, lambda: g.pending)
    pairs += list(g)
    assert [i for i, _ in pairs[2:]] == [2] and sorted(i for i, _ in pairs) == [0, 1, 2]
    assert all(r.choices for _, r in pairs) and not g.pending and g.outcome() == []
    client.close()


def test_batch_price(url):
    async def main():
        async with llm.AsyncOpenAI(base_url=url) as client:
            return (client.price("gpt-4o-mini"), client.batch_price("gpt-4o-mini"),
                    client.batch_price("openai/gpt-4o-mini-2024-07-18"),
                    client.batch_price("chatgpt-4o-latest"), client.price("chatgpt-4o-latest"),
                    client.batch_price("no-such-model-xyz"))
    full, half, dated, none_batch, has_price, unknown = run(main())
    assert half == {"input": 0.075, "cached_input": 0.0375, "output": 0.30} == dated
    assert half["input"] == pytest.approx(full["input"] / 2)
    assert none_batch is None and has_price is not None and unknown is None
    client = llm.OpenAI(base_url=url)
    assert client.batch_price("gpt-4o-mini") == half
    with pytest.raises(TypeError):
        client.batch_price(5)
    client.close()
    with pytest.raises(llm.ClientClosedError):
        client.batch_price("gpt-4o-mini")


def test_a_window_refused_in_place_does_not_hang(url):
    """More refused items in a row than the window holds (nothing of the
    group in the engine, items left): the batch goes on taking them."""
    items = [{"messages": "not a list"}] * 300 + [{"messages": USER}]
    with llm.OpenAI(base_url=url, max_in_flight=8) as client:
        assert client._core.window < 300
        rs = client.batch(items, model="openai/m")
    assert len(rs) == 301 and all(isinstance(r, TypeError) for r in rs[:300])
    assert rs[300].choices[0].message.content

    async def main():
        async with llm.AsyncOpenAI(base_url=url, max_in_flight=8) as client:
            return await asyncio.wait_for(client.batch(items, model="openai/m"), 30)
    rs = run(main())
    assert len(rs) == 301 and all(isinstance(r, TypeError) for r in rs[:300])
    assert rs[300].choices[0].message.content


def test_paced_batch_channel_leaves_the_loop(url, slow_url):
    """client.batch reads its own paced channel; it leaves the loop once the
    batch returns, and after a cancellation once the cancelled requests
    completed. The loop's shared channel keeps signalling at once: a
    create() beside a batch is not held back by the batch's pacing."""
    async def main():
        async with llm.AsyncOpenAI(base_url=url, max_in_flight=8) as client:
            loop = asyncio.get_running_loop()
            t = asyncio.create_task(client.batch([USER] * 3000, model="openai/m"))
            await asyncio.sleep(0)
            reaper = client._core.reapers[loop]
            assert len(reaper.extra) == 1
            r = await client.chat.completions.create(model="openai/m", messages=USER)
            assert r.choices[0].message.content
            rs = await t
            assert len(rs) == 3000 and all(x.choices for x in rs)
            assert reaper.extra == set()
        async with llm.AsyncOpenAI(base_url=slow_url, max_in_flight=8) as client:
            t = asyncio.create_task(client.batch([USER] * 1000, model="openai/m"))
            await asyncio.sleep(0.3)
            reaper = client._core.reapers[loop]
            assert len(reaper.extra) == 1
            t.cancel()
            with pytest.raises(asyncio.CancelledError):
                await t
            end = loop.time() + 10
            while reaper.extra:
                assert loop.time() < end, "the cancelled batch's channel stayed"
                await asyncio.sleep(0.05)
            r = await client.chat.completions.create(model="openai/m", messages=USER)
            assert r.choices[0].message.content
    run(main())


def test_paced_batch_lingers_for_slow_requests(slow_url):
    """Fewer completions than the group waits for (each request slow): the
    linger tick hands out what came, so a batch finishes in about the time
    its waves take, sync and async."""
    import time
    with llm.OpenAI(base_url=slow_url, max_in_flight=8) as client:
        t0 = time.monotonic()
        rs = client.batch([USER] * 24, model="openai/m")
        took = time.monotonic() - t0
    assert len(rs) == 24 and all(r.choices for r in rs) and took < 5

    async def main():
        async with llm.AsyncOpenAI(base_url=slow_url, max_in_flight=8) as client:
            t0 = time.monotonic()
            rs = await client.batch([USER] * 24, model="openai/m")
            return rs, time.monotonic() - t0
    rs, took = run(main())
    assert len(rs) == 24 and all(r.choices for r in rs) and took < 5
