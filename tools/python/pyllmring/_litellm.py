"""LiteLLM's function shapes: acompletion, completion, batch_completion,
abatch_completion, aembedding, embedding. Models route by their
"provider/model" prefix as in LiteLLM. One engine per (api_base, api_key)
serves every call that names them, sync and async alike."""

from __future__ import annotations

import threading

from ._client import AsyncOpenAI, OpenAI, _Core, _batch_async, _batch_sync

__all__ = ["acompletion", "completion", "batch_completion", "abatch_completion",
           "aembedding", "embedding", "default_client"]

_lock = threading.Lock()
_cores = {}  # (base_url, api_key) -> (AsyncOpenAI, OpenAI) sharing one _Core

# LiteLLM arguments that are not request fields.
_CLIENT_ARGS = ("api_base", "base_url", "api_key", "custom_llm_provider", "num_retries",
                "max_retries", "timeout", "request_timeout", "extra_headers", "headers",
                "api_version", "metadata", "mock_response", "max_workers", "caching")


def default_client(api_base=None, api_key=None):
    """The clients behind the module functions for this endpoint and key:
    (AsyncOpenAI, OpenAI) over one engine, made on first use."""
    key = (api_base, api_key)
    pair = _cores.get(key)
    if pair is None:
        with _lock:
            pair = _cores.get(key)
            if pair is None:
                core = _Core(base_url=api_base, api_key=api_key)
                pair = (AsyncOpenAI(_shared_core=core), OpenAI(_shared_core=core))
                _cores[key] = pair
    return pair


def _split(model, kwargs):
    """(client key, model, create kwargs) from LiteLLM's arguments."""
    api_base = kwargs.pop("api_base", None) or kwargs.pop("base_url", None)
    kwargs.pop("base_url", None)
    api_key = kwargs.pop("api_key", None)
    provider = kwargs.pop("custom_llm_provider", None)
    if provider and not model.startswith(provider + "/"):
        model = f"{provider}/{model}"
    retries = kwargs.pop("num_retries", None)
    if retries is None:
        retries = kwargs.pop("max_retries", None)
    else:
        kwargs.pop("max_retries", None)
    timeout = kwargs.pop("timeout", None) or kwargs.pop("request_timeout", None)
    kwargs.pop("request_timeout", None)
    headers = kwargs.pop("extra_headers", None) or kwargs.pop("headers", None)
    kwargs.pop("headers", None)
    for k in ("api_version", "metadata", "max_workers", "caching"):
        kwargs.pop(k, None)
    if retries is not None:
        kwargs["max_retries"] = retries
    if timeout is not None:
        kwargs["timeout"] = float(timeout)
    if headers:
        kwargs["extra_headers"] = headers
    kwargs["model"] = model
    return api_base, api_key, kwargs


async def acompletion(model, messages, **kwargs):
    """LiteLLM's acompletion: the response supports r["choices"][0]["message"]
    ["content"] and attribute access; stream=True gives an async iterator."""
    api_base, api_key, kw = _split(model, kwargs)
    aclient, _ = default_client(api_base, api_key)
    return await aclient.chat.completions.create(messages=messages, **kw)


def completion(model, messages, **kwargs):
    """LiteLLM's completion (blocking; works inside a running loop)."""
    api_base, api_key, kw = _split(model, kwargs)
    _, client = default_client(api_base, api_key)
    return client.chat.completions.create(messages=messages, **kw)


def batch_completion(model, messages, **kwargs):
    """LiteLLM's batch_completion: one request per message list, outcomes in
    input order, a failed request's exception in its place. No thread per
    request: the engine takes them as its window frees up."""
    api_base, api_key, kw = _split(model, kwargs)
    _, client = default_client(api_base, api_key)
    # Each item is dict(kw, messages=m), made in C only when the C path
    # cannot read kw and m as they are.
    return _batch_sync(client._core, messages, None, common=kw)


async def abatch_completion(model, messages, **kwargs):
    """batch_completion from asyncio."""
    api_base, api_key, kw = _split(model, kwargs)
    aclient, _ = default_client(api_base, api_key)
    return await _batch_async(aclient._core, messages, None, common=kw)


async def aembedding(model, input, **kwargs):
    api_base, api_key, kw = _split(model, kwargs)
    aclient, _ = default_client(api_base, api_key)
    return await aclient.embeddings.create(input=input, **kw)


def embedding(model, input, **kwargs):
    api_base, api_key, kw = _split(model, kwargs)
    _, client = default_client(api_base, api_key)
    return client.embeddings.create(input=input, **kw)
