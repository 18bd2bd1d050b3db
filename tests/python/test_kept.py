"""Results kept without their futures (issue 11): once a handle is handed out
(drain, dispatch) its result is a compact copy, a _core.Result, and the
engine's future is released; response objects hold that Result, not the
handle. Every field must read the same as before the release (also errors,
tool calls, cache hits, streams, sessions, usage), the records must not be
GC-tracked while they hold nothing that can form a cycle (yet cycles built
through them must still be collected), and a kept result must cost far less
than a future (RSS of 100,000 kept results)."""
import asyncio
import gc
import json
import os
import subprocess
import sys
import textwrap
import weakref

import pytest

import pyllmring as llm
from pyllmring import _core
from conftest import MockServer


@pytest.fixture(scope="module")
def mock():
    m = MockServer()
    yield m.url
    m.close()


MSG = [{"role": "user", "content": "hi"}]
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
FIELDS = ("error", "error_name", "error_message", "http_status", "body", "body_is_json", "text",
          "finish_reason", "streamed", "request_id", "model", "provider", "usage", "timings",
          "attempts", "retry_after", "tool_calls", "cost_usd", "cached", "cost_saved_usd")


def drain_one(ch, timeout=10.0):
    assert ch.wait(timeout)
    (ev,) = ch.drain()
    return ev[1]


def test_a_drained_handle_keeps_a_result_with_every_field(mock):
    eng = _core.Engine(base_url=mock, api_key="x")
    ch = _core.Channel()
    h = eng.submit(ch, "t", "openai/gpt-4o-mini", MSG, {"max_tokens": 5, "tools": TOOLS})
    assert h.result is None  # not handed out yet
    assert drain_one(ch) is h
    k = h.result
    assert isinstance(k, _core.Result)
    for f in FIELDS:
        assert getattr(k, f) == getattr(h, f), f
    assert k.error == 0 and k.http_status == 200 and k.provider == "openai"
    assert k.finish_reason == "tool_calls" and k.tool_calls[0][1] == "get_weather"
    assert json.loads(k.tool_calls[0][2]) == {"city": "Paris", "days": 3}
    assert json.loads(k.body)["choices"][0]["message"]["tool_calls"]
    assert k.cost_usd > 0 and k.usage[1] > 0
    # Complete and settled: done, nothing to cancel, still readable.
    assert h.done()
    h.cancel()
    assert h.error == 0 and h.token == "t"
    eng.close()
    del eng, ch
    gc.collect()
    assert k.tool_calls == h.tool_calls and k.body == h.body  # the engine is gone


def test_records_hold_the_result_not_the_handle(mock):
    with llm.OpenAI(base_url=mock) as client:
        r = client.chat.completions.create(model="openai/gpt-4o-mini", messages=MSG,
                                           tools=TOOLS, max_tokens=16)
        rs = client.batch([dict(model="openai/gpt-4o-mini", messages=MSG, max_tokens=4)] * 3)
        u = client.usage()
    for x in [r] + rs:
        assert isinstance(x._h, _core.Result)
    call = r.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather" and call.id
    assert json.loads(call.function.arguments) == {"city": "Paris", "days": 3}
    assert r.choices[0].finish_reason == "tool_calls"
    body = json.loads(r.raw_body)
    assert r.id == body["id"] and r.created == body["created"] and r.model == body["model"]
    info = r.llmring
    assert info.http_status == 200 and info.provider == "openai" and info.attempts == 1
    assert info.request_id and info.cost_usd > 0 and not info.cached
    assert info.timings.total_ms >= info.timings.ttfb_ms >= 0
    # Usage accounting over the kept results equals the engine's.
    assert u["succeeded"] == 4
    assert u["output_tokens"] == sum(x.usage.completion_tokens for x in [r] + rs)
    assert u["input_tokens"] == sum(x.usage.prompt_tokens for x in [r] + rs)
    assert u["cost_usd"] == pytest.approx(sum(x.llmring.cost_usd for x in [r] + rs))
    # A record made again from the Result reads the same.
    again = llm.ChatCompletion(r._h, 1, None)
    assert again.model_dump() == r.model_dump()


def test_errors_keep_status_body_and_retry_after(mock):
    async def main():
        async with llm.AsyncOpenAI(base_url=mock, max_retries=0) as client:
            errs = []
            for fault in ("429", "400", "reset"):
                try:
                    await client.chat.completions.create(model="openai/m", messages=MSG,
                                                         extra_headers={"x-mock-fault": fault})
                except llm.APIError as e:
                    errs.append(e)
            rs = await client.batch([dict(model="openai/m", messages=MSG,
                                          extra_headers={"x-mock-fault": "500"})])
            return errs, rs
    (e429, e400, ereset), (e500,) = asyncio.run(main())
    assert isinstance(e429, llm.RateLimitError) and e429.status_code == 429
    assert e429.code == "rate_limited" and isinstance(e429.body, dict)
    assert isinstance(e400, llm.BadRequestError) and e400.status_code == 400 and e400.body
    assert isinstance(ereset, llm.APIConnectionError) and ereset.code == "connection_reset"
    assert isinstance(e500, llm.InternalServerError) and e500.status_code == 500 and e500.body


def test_cached_results_and_streams_after_release(mock, tmp_path):
    db = tmp_path / "c.sqlite"
    with llm.OpenAI(base_url=mock, cache_path=db) as client:
        first = client.chat.completions.create(model="openai/gpt-4o-mini", messages=MSG,
                                               max_tokens=8)
        hit = client.chat.completions.create(model="openai/gpt-4o-mini", messages=MSG,
                                             max_tokens=8)
    assert isinstance(hit._h, _core.Result)
    assert hit.llmring.cached and hit.llmring.cost_usd == 0
    assert hit.llmring.cost_saved_usd == pytest.approx(first.llmring.cost_usd)
    assert hit.choices[0].message.content == first.choices[0].message.content
    assert hit.usage.completion_tokens == first.usage.completion_tokens

    async def stream():
        async with llm.AsyncOpenAI(base_url=mock) as client:
            s = await client.chat.completions.create(model="openai/m", messages=MSG,
                                                     stream=True, max_tokens=6)
            text = "".join([c.choices[0].delta.content or "" async for c in s if c.choices])
            return text, await s.get_final_completion()
    text, final = asyncio.run(stream())
    assert final.choices[0].message.content == text and final.llmring.streamed
    assert isinstance(final._h, _core.Result)


def test_session_history_after_release(mock):
    with llm.OpenAI(base_url=mock) as client:
        s = client.session("openai/m", system="be brief")
        a = s.send("one")
        b = s.send("two")
        hist = s.history
    assert [m["role"] for m in hist] == ["system", "user", "assistant", "user", "assistant"]
    assert hist[2]["content"] == a.choices[0].message.content
    assert hist[4]["content"] == b.choices[0].message.content


def test_records_are_untracked_until_they_hold_a_container(mock):
    with llm.OpenAI(base_url=mock) as client:
        r = client.chat.completions.create(model="openai/m", messages=MSG, max_tokens=4)
    assert not gc.is_tracked(r)
    msg = r.choices[0].message       # choices is a list: the record is tracked again
    assert gc.is_tracked(r)
    assert not gc.is_tracked(msg) and not gc.is_tracked(r.usage.prompt_tokens_details)
    msg.refusal = [msg]              # a cycle through an untracked record
    assert gc.is_tracked(msg)

    with llm.OpenAI(base_url=mock) as client:
        r2 = client.chat.completions.create(model="openai/m", messages=MSG, max_tokens=4)
    assert not gc.is_tracked(r2)
    ref = weakref.ref(r2)
    r2.extra = {"me": r2}            # through the instance dict
    del r2
    gc.collect()
    assert ref() is None
    with llm.OpenAI(base_url=mock) as client:
        r3 = client.chat.completions.create(model="openai/m", messages=MSG, max_tokens=4)
    ref = weakref.ref(r3)
    r3.__dict__["loop"] = [r3]       # __dict__ handed out: tracked first
    del r3
    gc.collect()
    assert ref() is None


MEMORY_CHILD = textwrap.dedent("""
    import gc, json, sys
    import pyllmring as llm
    PAGE = 4096
    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * PAGE
    url, n = sys.argv[1], int(sys.argv[2])
    item = dict(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    client = llm.OpenAI(base_url=url, api_key="x", max_in_flight=64)
    client.batch([item] * 2000)          # warm: arenas, connections, the slab
    gc.collect()
    before = rss()
    rs = client.batch([item] * n)
    assert all(not isinstance(r, Exception) for r in rs)
    gc.collect()
    after = rss()
    print(json.dumps({"n": n, "bytes_per_result": (after - before) / n}))
    client.close()
""")


@pytest.mark.skipif("asan" in os.environ.get("LD_PRELOAD", ""),
                    reason="resident set is meaningless under ASan")
def test_kept_results_cost_far_less_than_futures(mock):
    n = 100_000
    out = subprocess.run([sys.executable, "-c", MEMORY_CHILD, mock, str(n)], capture_output=True,
                         text=True, timeout=240, env=dict(os.environ, PYTHONMALLOC="pymalloc"))
    assert out.returncode == 0, out.stderr
    per = json.loads(out.stdout.strip().splitlines()[-1])["bytes_per_result"]
    # A kept future was ~6 KB a result (struct, request, response and text
    # buffers); a Result and its record are the response's own bytes.
    assert per < 2560, f"{per:.0f} bytes per kept result"
