"""pyllmring's legacy text completions and response cache against `llmring
mock` in its own process: completions.create (async and sync) through the
mock's /v1/completions, what it refuses; cache_path / cache_mode (a hit
answers without a request, r.llmring.cached and cost_saved_usd, usage()'s
cache counts, each mode's effect), and run_batch(cache=...)."""

import asyncio
import json
import os
import signal
import subprocess

import pytest

import pyllmring as llm

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
    assert r.choices[0].message.content == \
        first[0]["response"]["body"]["choices"][0]["message"]["content"]
