"""pyllmring against `llmring mock` in its own process: the response
records as C types (both access styles, model_dump, setting fields, n > 1
and tool calls through the Python hooks, freed without the cyclic GC),
Channel.dispatch and the Ready awaitable; the legacy text completions
(completions.create, async and sync, and what it refuses); the response
cache (cache_path / cache_mode: a hit answers without a request,
r.llmring.cached and cost_saved_usd, usage()'s cache counts, each mode's
effect) and run_batch(cache=...)."""

import asyncio
import gc
import json
import os
import signal
import subprocess
import weakref

import pytest

import pyllmring as llm
from pyllmring import _core, _types

LLMRING = os.environ.get("LLMRING_BIN", "llmring")
MSG = [{"role": "user", "content": "Say hello from the cache test"}]


@pytest.fixture(scope="module")
def mock():
    proc = subprocess.Popen([LLMRING, "mock", "--listen", "127.0.0.1:0"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    assert line.startswith("listening on "), line
    yield line.split()[-1]
    proc.send_signal(signal.SIGINT)
    proc.wait(10)


def mock_submits(url):
    """The mock's count of chat submissions (GET /mock/stats)."""
    import urllib.request
    root = url.rsplit("/v1", 1)[0]
    with urllib.request.urlopen(root + "/mock/stats", timeout=10) as f:
        return json.load(f)


# ---- the response records ---------------------------------------------------------

TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "The weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]


def test_records_both_access_styles_and_dump(mock):
    with llm.OpenAI(base_url=mock) as client:
        r = client.chat.completions.create(model="openai/gpt-4o-mini", messages=MSG,
                                           max_tokens=6)
    c = r.choices[0]
    assert type(r) is llm.ChatCompletion and isinstance(c, _types.Choice)
    assert isinstance(c.message, _types.Message) and isinstance(r.usage, _types.Usage)
    assert c is r.choices[0] and r.usage is r.usage  # built once, kept
    assert c.index == 0 and c.logprobs is None and c.message.role == "assistant"
    assert c.message.refusal is None and c.message.tool_calls is None
    assert r["choices"][0]["message"]["content"] == c.message.content
    assert r.get("nothing", 7) == 7 and "usage" in r and "nothing" not in r
    with pytest.raises(KeyError):
        r["nothing"]
    d = r.model_dump()
    assert d["object"] == "chat.completion" and d["model"] == r.model and d["id"] == r.id
    assert d["usage"] == {"prompt_tokens": r.usage.prompt_tokens,
                          "completion_tokens": r.usage.completion_tokens,
                          "total_tokens": r.usage.total_tokens,
                          "prompt_tokens_details": {"cached_tokens": 0}}
    assert r == d and json.loads(r.model_dump_json()) == d
    assert "content=" in repr(c.message)
    # Fields can be set, as on openai-python's models; extras go to __dict__.
    r.model = "renamed"
    r["id"] = "chatcmpl-x"
    c.message.content = "edited"
    r.extra_field = 1
    assert r.model == "renamed" and r.id == "chatcmpl-x" and r.extra_field == 1
    assert r.model_dump()["choices"][0]["message"]["content"] == "edited"
    with pytest.raises(AttributeError):
        del r.choices
    with pytest.raises(TypeError):
        llm.ChatCompletion("not a handle")


def test_records_n_choices_and_tool_calls(mock):
    with llm.OpenAI(base_url=mock) as client:
        r = client.chat.completions.create(model="openai/gpt-4o-mini", messages=MSG,
                                           max_tokens=4, n=3)
        t = client.chat.completions.create(model="openai/gpt-4o-mini", messages=MSG,
                                           tools=TOOLS)
    # n > 1: the choices are the body's (the mock answers with one), read
    # through the Python hook, with logprobs present as openai-python has it.
    body = json.loads(r.raw_body)
    assert [c.message.content for c in r.choices] == \
        [c["message"]["content"] for c in body["choices"]]
    assert type(r.choices[0]) is _types.Obj and r.choices[0].logprobs is None
    call = t.choices[0].message.tool_calls[0]
    assert call.type == "function" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) is not None and call.id
    assert t.choices[0].finish_reason == "tool_calls"
    assert t.model_dump()["choices"][0]["message"]["tool_calls"][0]["id"] == call.id


def test_stream_chunks_are_records(mock):
    async def main():
        async with llm.AsyncOpenAI(base_url=mock) as client:
            s = await client.chat.completions.create(model="openai/gpt-4o-mini", messages=MSG,
                                                     max_tokens=5, stream=True,
                                                     stream_options={"include_usage": True})
            return [c async for c in s]
    chunks = asyncio.run(main())
    text = [c for c in chunks if c.choices]
    assert len(text) >= 5 and all(type(c) is llm.ChatCompletionChunk for c in chunks)
    first = text[0]
    assert first.object == "chat.completion.chunk" and first.choices[0].delta.role == "assistant"
    assert first["choices"][0]["delta"]["content"] == first.choices[0].delta.content
    assert chunks[-1].usage.completion_tokens == 5 and chunks[-1].choices == []
    assert first.model_dump()["choices"][0]["index"] == 0


def test_results_are_freed_without_the_cyclic_gc(mock):
    async def main():
        async with llm.AsyncOpenAI(base_url=mock) as client:
            rs = await client.batch([{"messages": MSG}] * 50, model="openai/m")
            one = await client.chat.completions.create(model="openai/m", messages=MSG)
            s = await client.chat.completions.create(model="openai/m", messages=MSG,
                                                     stream=True)
            async for _ in s:
                pass
            return rs, one
    gc.disable()
    try:
        rs, one = asyncio.run(main())
        refs = [weakref.ref(r) for r in rs] + [weakref.ref(one)]
        rs[0].choices[0].message.content
        del rs, one
        assert all(r() is None for r in refs)
    finally:
        gc.enable()


def test_dispatch_hands_every_event_out_when_a_token_raises(mock):
    class Token:
        def __init__(self, fail):
            self.fail, self.handle = fail, None

        def _done(self, h):
            self.handle = h
            if self.fail:
                raise ValueError("from a token")

    e = _core.Engine(base_url=mock, api_key="k")
    ch = _core.Channel()
    tokens = [Token(i in (1, 3)) for i in range(5)]
    for t in tokens:
        e.submit(ch, t, "mock/m", MSG)
    seen = 0
    while seen < 5:
        ch.wait(10)
        try:
            seen += ch.dispatch(-1, asyncio.Future)
        except ValueError as err:
            assert "from a token" in str(err)
            seen = sum(t.handle is not None for t in tokens)
    assert all(t.handle is not None and t.handle.error == 0 for t in tokens)
    with pytest.raises(TypeError):
        ch.dispatch("all", asyncio.Future)
    e.close()


def test_ready_awaitable():
    async def main():
        return await _core.Ready(5), await _core.Ready((1, 2))
    assert asyncio.run(main()) == (5, (1, 2))
    r = _core.Ready("v")
    with pytest.raises(StopIteration) as stop:
        r.send(None)
    assert stop.value.value == "v"
    with pytest.raises(StopIteration):
        next(r)
    with pytest.raises(KeyError):
        _core.Ready(1).throw(KeyError("k"))


# ---- legacy text completions ----------------------------------------------------


def test_text_completion_async_and_sync(mock):
    async def main():
        async with llm.AsyncOpenAI(base_url=mock) as client:
            return await client.completions.create(model="openai/gpt-3.5-turbo-instruct",
                                                   prompt="Once upon a time", max_tokens=8)
    r = asyncio.run(main())
    assert r.object == "text_completion"
    assert isinstance(r.choices[0].text, str) and r.choices[0].text
    assert r["choices"][0]["text"] == r.choices[0].text
    assert r.choices[0].finish_reason in ("stop", "length")
    assert r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    assert r.model_dump()["choices"][0]["text"] == r.choices[0].text
    assert r.llmring.provider == "openai" and not r.llmring.cached

    with llm.OpenAI(base_url=mock) as client:
        s = client.completions.create(model="openai/gpt-3.5-turbo-instruct",
                                      prompt=["A list of one prompt"], max_tokens=4)
    assert s.choices[0].text and s.usage.completion_tokens <= 4


def test_text_completion_refusals(mock):
    with llm.OpenAI(base_url=mock) as client:
        with pytest.raises(NotImplementedError, match="stream"):
            client.completions.create(model="openai/m", prompt="x", stream=True)
        with pytest.raises(NotImplementedError, match="one prompt"):
            client.completions.create(model="openai/m", prompt=["a", "b"])
        with pytest.raises(TypeError):
            client.completions.create(model="openai/m", prompt=42)
        # A dialect without the legacy endpoint fails as a bad request, in place.
        with pytest.raises(llm.APIError):
            client.completions.create(model="anthropic/claude-haiku-4-5", prompt="x")


# ---- the response cache -----------------------------------------------------------


def test_cache_hit_answers_without_request(mock, tmp_path):
    db = tmp_path / "cache.sqlite"
    with llm.OpenAI(base_url=mock, cache_path=db) as client:
        first = client.chat.completions.create(model="openai/gpt-4o-mini", messages=MSG,
                                               max_tokens=8)
        second = client.chat.completions.create(model="openai/gpt-4o-mini", messages=MSG,
                                                max_tokens=8)
        u = client.usage()
    assert not first.llmring.cached and first.llmring.cost_saved_usd == 0
    assert second.llmring.cached
    assert second.choices[0].message.content == first.choices[0].message.content
    assert second.llmring.cost_usd == 0
    assert second.llmring.cost_saved_usd == pytest.approx(first.llmring.cost_usd)
    assert first.llmring.cost_usd > 0  # gpt-4o-mini is priced
    assert u["cache"]["hits"] == 1 and u["cache"]["lookups"] == 2
    assert u["cache"]["cost_saved_usd"] == pytest.approx(first.llmring.cost_usd)

    # A second client on the same file: hits from the first one's stores,
    # async and in a batch too.
    async def main():
        async with llm.AsyncOpenAI(base_url=mock, cache_path=str(db)) as client:
            r = await client.chat.completions.create(model="openai/gpt-4o-mini", messages=MSG,
                                                     max_tokens=8)
            rs = await client.batch([dict(model="openai/gpt-4o-mini", messages=MSG,
                                          max_tokens=8)] * 3)
            return r, rs
    r, rs = asyncio.run(main())
    assert r.llmring.cached and all(x.llmring.cached for x in rs)


@pytest.mark.parametrize("mode", ["read", "write", "off"])
def test_cache_modes(mock, tmp_path, mode):
    db = tmp_path / "c.sqlite"
    with llm.OpenAI(base_url=mock, cache_path=db) as seed:  # one stored response
        seed.chat.completions.create(model="openai/gpt-4o-mini", messages=MSG, max_tokens=8)
    other = [{"role": "user", "content": "a question not stored yet"}]
    with llm.OpenAI(base_url=mock, cache_path=db, cache_mode=mode) as client:
        stored = client.chat.completions.create(model="openai/gpt-4o-mini", messages=MSG,
                                                max_tokens=8)
        new = client.chat.completions.create(model="openai/gpt-4o-mini", messages=other,
                                             max_tokens=8)
        again = client.chat.completions.create(model="openai/gpt-4o-mini", messages=other,
                                               max_tokens=8)
        u = client.usage()["cache"]
    # read: hits answered, nothing stored; write: always asks, stores; off: no cache.
    assert stored.llmring.cached == (mode == "read")
    assert not new.llmring.cached
    assert not again.llmring.cached
    if mode == "off":
        assert u["lookups"] == 0 and u["stores"] == 0
    elif mode == "read":
        assert u["hits"] == 1 and u["stores"] == 0
    else:
        assert u["hits"] == 0
    # What the mode stored (the stores run on the cache's thread: read
    # them back with a new client once this one has closed).
    with llm.OpenAI(base_url=mock, cache_path=db, cache_mode="read") as reader:
        r = reader.chat.completions.create(model="openai/gpt-4o-mini", messages=other,
                                           max_tokens=8)
    assert r.llmring.cached == (mode == "write")


def test_cache_options_refused(mock, tmp_path):
    with pytest.raises(ValueError, match="cache_mode must be"):
        llm.OpenAI(base_url=mock, cache_path=tmp_path / "x", cache_mode="sometimes")
    with pytest.raises(ValueError, match="needs cache_path"):
        llm.OpenAI(base_url=mock, cache_mode="read")


def test_run_batch_cache(mock, tmp_path):
    inp = tmp_path / "in.jsonl"
    with open(inp, "w") as f:
        for i in range(5):
            f.write(json.dumps({"custom_id": f"r{i}", "method": "POST",
                                "url": "/v1/chat/completions",
                                "body": {"model": "gpt-4o-mini", "max_tokens": 8,
                                         "messages": [{"role": "user",
                                                       "content": f"question {i}"}]}}) + "\n")
    db = tmp_path / "batch.sqlite"
    out1, out2 = tmp_path / "o1.jsonl", tmp_path / "o2.jsonl"
    assert llm.run_batch(inp, out1, base_url=mock, cache=db, quiet=True) == 0
    assert llm.run_batch(inp, out2, base_url=mock, cache=db, quiet=True) == 0
    first = [json.loads(x) for x in open(out1)]
    second = [json.loads(x) for x in open(out2)]
    assert len(first) == len(second) == 5
    assert not any(x.get("cached") for x in first)
    assert all(x.get("cached") for x in second)
    # The client reads the job's file: the same requests hit.
    with llm.OpenAI(base_url=mock, cache_path=db, cache_mode="read") as client:
        r = client.chat.completions.create(model="openai/gpt-4o-mini", max_tokens=8,
                                           messages=[{"role": "user", "content": "question 0"}])
    assert r.llmring.cached
    # Output lines come in completion order: find r0's.
    r0 = next(x for x in first if x["custom_id"] == "r0")
    assert r.choices[0].message.content == r0["response"]["body"]["choices"][0]["message"]["content"]
