"""Response objects: attribute access as openai-python's pydantic models,
item access as LiteLLM's ModelResponse, ``model_dump()`` / ``to_dict()``.

They are built from the C result's fields (text, tool calls, usage, ids),
not from the body: the body is parsed only when something the fields do not
hold is asked for (``n`` > 1 choices, logprobs, an embedding's vectors)."""

from __future__ import annotations

import json
import time

from . import _core

__all__ = [
    "Obj", "ChatCompletion", "ChatCompletionChunk", "Completion", "CreateEmbeddingResponse",
    "LLMRingInfo",
]


class _Access:
    """Both access styles over a record's fields (``_fields()``)."""

    __slots__ = ()

    def __getitem__(self, key):
        try:
            return getattr(self, key)
        except AttributeError:
            raise KeyError(key) from None

    def __setitem__(self, key, value):
        setattr(self, key, value)

    def __contains__(self, key):
        return key in self._fields()

    def get(self, key, default=None):
        return getattr(self, key, default)

    def keys(self):
        return self._fields().keys()

    def items(self):
        return self._fields().items()

    def __iter__(self):
        return iter(self._fields())

    def model_dump(self, exclude_none=False):
        return _dump(self, exclude_none)

    to_dict = model_dump
    dict = model_dump

    def model_dump_json(self, indent=None):
        return json.dumps(self.model_dump(), indent=indent)

    json = model_dump_json

    def __eq__(self, other):
        if isinstance(other, _Access):
            return self.model_dump() == other.model_dump()
        if isinstance(other, dict):
            return self.model_dump() == other
        return NotImplemented

    __hash__ = None

    def __repr__(self):
        inner = ", ".join(f"{k}={v!r}" for k, v in self._fields().items())
        return f"{type(self).__name__}({inner})"


class Obj(_Access):
    """A record of any fields (they live in ``__dict__``)."""

    def __init__(self, **fields):
        self.__dict__.update(fields)

    def _fields(self):
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}


class _Record(_Access):
    """A record of fixed fields (``_keys``): what every response has, made
    for each one, so made by C (the bases in _core_records.c, whose fields
    read as None until set)."""

    __slots__ = ()
    _keys = ()

    def _fields(self):
        return {k: getattr(self, k) for k in self._keys}


class Message(_core.MessageBase, _Record):
    __slots__ = ()
    _keys = ("role", "content", "tool_calls", "refusal", "function_call")

    def __init__(self, content, tool_calls):
        self.role = "assistant"
        self.content = content
        self.tool_calls = tool_calls


class Choice(_core.ChoiceBase, _Record):
    __slots__ = ()
    _keys = ("index", "message", "finish_reason", "logprobs")

    def __init__(self, index, message, finish_reason):
        self.index = index
        self.message = message
        self.finish_reason = finish_reason


class PromptTokensDetails(_core.PromptTokensDetailsBase, _Record):
    __slots__ = ()
    _keys = ("cached_tokens",)

    def __init__(self, cached_tokens):
        self.cached_tokens = cached_tokens


class Usage(_core.UsageBase, _Record):
    __slots__ = ()
    _keys = ("prompt_tokens", "completion_tokens", "total_tokens", "prompt_tokens_details")

    def __init__(self, usage):
        inp, out, cached = usage
        self.prompt_tokens = inp
        self.completion_tokens = out
        self.total_tokens = inp + out
        self.prompt_tokens_details = PromptTokensDetails(cached)


class Delta(_core.DeltaBase, _Record):
    __slots__ = ()
    _keys = ("role", "content", "tool_calls")

    def __init__(self, content, tool_calls):
        self.role = "assistant"
        self.content = content
        self.tool_calls = tool_calls


class ChunkChoice(_core.ChunkChoiceBase, _Record):
    __slots__ = ()
    _keys = ("index", "delta", "finish_reason", "logprobs")

    def __init__(self, index, delta, finish_reason):
        self.index = index
        self.delta = delta
        self.finish_reason = finish_reason


def _dump(v, exclude_none):
    if isinstance(v, _Access):
        return {k: _dump(x, exclude_none) for k, x in v._fields().items()
                if not (exclude_none and x is None)}
    if isinstance(v, list):
        return [_dump(x, exclude_none) for x in v]
    if isinstance(v, dict):
        return {k: _dump(x, exclude_none) for k, x in v.items()}
    return v


def wrap(v):
    """JSON values into Obj trees (dicts become Obj, recursively)."""
    if isinstance(v, dict):
        return Obj(**{k: wrap(x) for k, x in v.items()})
    if isinstance(v, list):
        return [wrap(x) for x in v]
    return v


class LLMRingInfo(Obj):
    """``r.llmring``: what only llmring knows about the request."""


def _kept(handle):
    """What a response object keeps of a completed handle: its Result (the
    same attributes, without the engine's future or the token) once
    settled, else the handle itself."""
    r = getattr(handle, "result", None)
    return handle if r is None else r


def llmring_info(h):
    queued, ttfb, total, ttft = h.timings
    return LLMRingInfo(cost_usd=h.cost_usd, provider=h.provider, attempts=h.attempts,
                       request_id=h.request_id, http_status=h.http_status,
                       streamed=bool(h.streamed), cached=h.cached,
                       cost_saved_usd=h.cost_saved_usd,
                       timings=Obj(queued_ms=queued, ttfb_ms=ttfb, total_ms=total,
                                   ttft_ms=ttft))


def _tool_calls(h):
    calls = h.tool_calls
    if not calls:
        return None
    return [Obj(id=cid, type="function", function=Obj(name=name, arguments=args))
            for cid, name, args in calls]


def _chunk_choices(delta):
    """A streamed delta that is not plain text of choice 0: (text, index,
    finish, tool_index, tool_id, tool_name, tool_args)."""
    text, index, finish, tool_index, tool_id, tool_name, tool_args = delta
    calls = None
    if tool_index >= 0:
        calls = [Obj(index=tool_index, id=tool_id, type="function" if tool_id else None,
                     function=Obj(name=tool_name, arguments=tool_args or ""))]
    return [ChunkChoice(index, Delta(text or None, calls), finish)]


class ChatCompletion(_core.ChatCompletionBase, _Access):
    """openai-python's ChatCompletion over a completed handle. The C base
    makes choices, usage and model from the result's fields on first
    access; id, created, system_fingerprint and service_tier (which only
    the body holds) come from _body_fields() when first asked."""

    _keys = ("id", "object", "created", "model", "choices", "usage", "system_fingerprint",
             "service_tier")

    def _fields(self):
        return {k: getattr(self, k) for k in self._keys}

    def _choices_from_body(self):
        """choices when n > 1: the result's fields hold choice 0 only."""
        b = self._body() or {}
        if isinstance(b.get("choices"), list):
            choices = [wrap(c) for c in b["choices"]]
            for c in choices:
                c.__dict__.setdefault("logprobs", None)
            return choices
        h = self._h
        return [Choice(0, Message(h.text, _tool_calls(h)), h.finish_reason)]

    def _body_fields(self):
        b = self._body() or {}
        return (b.get("id") or self._h.request_id or "", b.get("created") or int(time.time()),
                b.get("system_fingerprint"), b.get("service_tier"))

    def _body(self):
        h = self._h
        if not h.body_is_json:
            return None
        try:
            v = json.loads(h.body)
        except (TypeError, ValueError):
            return None
        return v if isinstance(v, dict) else None

    @property
    def llmring(self):
        d = self.__dict__
        info = d.get("_info")
        if info is None:
            info = d["_info"] = llmring_info(self._h)
        return info

    @property
    def raw_body(self):
        """The response body as the server sent it (for a stream: the
        completion assembled from its events)."""
        return self._h.body

    # LiteLLM's ModelResponse helpers.
    @property
    def _hidden_params(self):
        return {"response_cost": self._h.cost_usd, "custom_llm_provider": self._h.provider}


class ChatCompletionChunk(_core.ChunkBase, _Record):
    """One streamed event, in openai-python's ChatCompletionChunk shape:
    ChatCompletionChunk(id, model, created, delta, usage=None); its choices
    are made from the delta when first read."""

    __slots__ = ()
    _keys = ("id", "object", "created", "model", "choices", "usage", "system_fingerprint")


_core.set_record_types(message=Message, choice=Choice, usage=Usage, details=PromptTokensDetails,
                       delta=Delta, chunk_choice=ChunkChoice, chunk=ChatCompletionChunk,
                       tool_calls=_tool_calls,
                       chunk_choices=_chunk_choices)


class CreateEmbeddingResponse(Obj):
    """openai-python's CreateEmbeddingResponse, from the normalised body."""

    def __init__(self, handle):
        body = {}
        if handle.body_is_json:
            try:
                body = json.loads(handle.body)
            except ValueError:
                body = {}
        data = [Obj(object="embedding", index=e.get("index", i), embedding=e.get("embedding"))
                for i, e in enumerate(body.get("data") or [])]
        inp = handle.usage[0]
        super().__init__(object="list", data=data, model=handle.model or body.get("model", ""),
                         usage=Obj(prompt_tokens=inp, total_tokens=inp))
        self.__dict__["_h"] = _kept(handle)

    @property
    def llmring(self):
        return llmring_info(self.__dict__["_h"])


class Completion(Obj):
    """openai-python's Completion (the legacy text-completions endpoint),
    from the result's fields: choice 0's text, finish reason and usage."""

    def __init__(self, handle, model=None):
        inp, out, _ = handle.usage
        usage = Obj(prompt_tokens=inp, completion_tokens=out, total_tokens=inp + out)
        super().__init__(id=handle.request_id or "", object="text_completion",
                         created=int(time.time()), model=handle.model or model or "",
                         choices=[Obj(index=0, text=handle.text or "", logprobs=None,
                                      finish_reason=handle.finish_reason)],
                         usage=usage, system_fingerprint=None)
        self.__dict__["_h"] = _kept(handle)

    @property
    def llmring(self):
        return llmring_info(self.__dict__["_h"])
