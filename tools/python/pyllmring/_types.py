"""Response objects: attribute access as openai-python's pydantic models,
item access as LiteLLM's ModelResponse, ``model_dump()`` / ``to_dict()``.

They are built from the C result's fields (text, tool calls, usage, ids),
not from the body: the body is parsed only when something the fields do not
hold is asked for (``n`` > 1 choices, logprobs, an embedding's vectors)."""

from __future__ import annotations

import json
import time

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
    """A record of fixed fields in slots: what every response has, made
    for each one, so made cheaply."""

    __slots__ = ()

    def _fields(self):
        return {k: getattr(self, k) for k in self.__slots__}


class Message(_Record):
    __slots__ = ("role", "content", "tool_calls", "refusal", "function_call")

    def __init__(self, content, tool_calls):
        self.role = "assistant"
        self.content = content
        self.tool_calls = tool_calls
        self.refusal = None
        self.function_call = None


class Choice(_Record):
    __slots__ = ("index", "message", "finish_reason", "logprobs")

    def __init__(self, index, message, finish_reason):
        self.index = index
        self.message = message
        self.finish_reason = finish_reason
        self.logprobs = None


class PromptTokensDetails(_Record):
    __slots__ = ("cached_tokens",)

    def __init__(self, cached_tokens):
        self.cached_tokens = cached_tokens


class Usage(_Record):
    __slots__ = ("prompt_tokens", "completion_tokens", "total_tokens", "prompt_tokens_details")

    def __init__(self, usage):
        inp, out, cached = usage
        self.prompt_tokens = inp
        self.completion_tokens = out
        self.total_tokens = inp + out
        self.prompt_tokens_details = PromptTokensDetails(cached)


class Delta(_Record):
    __slots__ = ("role", "content", "tool_calls")

    def __init__(self, content, tool_calls):
        self.role = "assistant"
        self.content = content
        self.tool_calls = tool_calls


class ChunkChoice(_Record):
    __slots__ = ("index", "delta", "finish_reason", "logprobs")

    def __init__(self, index, delta, finish_reason):
        self.index = index
        self.delta = delta
        self.finish_reason = finish_reason
        self.logprobs = None


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


def _usage(h):
    return Usage(h.usage)


class ChatCompletion(Obj):
    """openai-python's ChatCompletion, made lazily from a completed handle:
    choices and usage from the result's fields on first access; id, created
    and system_fingerprint (which only the body holds) when first asked."""

    _BODY_FIELDS = ("id", "created", "system_fingerprint", "service_tier")

    def __init__(self, handle, n=1, model=None):
        d = self.__dict__
        d["_h"] = handle
        d["_n"] = n
        d["_model"] = model

    def __getattr__(self, name):
        # Python calls this only for names not in __dict__: the lazy fields.
        d = self.__dict__
        if name.startswith("__"):
            raise AttributeError(name)
        if name == "usage":  # made on first access: many callers never look
            u = d["usage"] = _usage(d["_h"])
            return u
        if "_built" not in d:
            self._build()
        if name in ChatCompletion._BODY_FIELDS and "_body_built" not in d:
            self._build_body()
        try:
            return d[name]
        except KeyError:
            raise AttributeError(name) from None

    def _fields(self):
        d = self.__dict__
        if "_built" not in d:
            self._build()
        if "_body_built" not in d:
            self._build_body()
        if "usage" not in d:
            d["usage"] = _usage(d["_h"])
        return {k: d[k] for k in ("id", "object", "created", "model", "choices", "usage",
                                  "system_fingerprint", "service_tier")}

    def _build(self):
        d = self.__dict__
        h = d["_h"]
        d["_built"] = True
        choices = None
        if d["_n"] > 1:
            b = self._body() or {}
            if isinstance(b.get("choices"), list):
                choices = [wrap(c) for c in b["choices"]]
                for c in choices:
                    c.__dict__.setdefault("logprobs", None)
        if choices is None:
            calls = _tool_calls(h) if h.tool_calls else None
            choices = [Choice(0, Message(h.text, calls), h.finish_reason)]
        d["object"] = "chat.completion"
        d["model"] = h.model or d["_model"] or ""
        d["choices"] = choices

    def _build_body(self):
        d = self.__dict__
        d["_body_built"] = True
        b = self._body() or {}
        d["id"] = b.get("id") or d["_h"].request_id or ""
        d["created"] = b.get("created") or int(time.time())
        d["system_fingerprint"] = b.get("system_fingerprint")
        d["service_tier"] = b.get("service_tier")

    def _body(self):
        h = self.__dict__["_h"]
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
            info = d["_info"] = llmring_info(d["_h"])
        return info

    @property
    def raw_body(self):
        """The response body as the server sent it (for a stream: the
        completion assembled from its events)."""
        return self.__dict__["_h"].body

    # LiteLLM's ModelResponse helpers.
    @property
    def _hidden_params(self):
        return {"response_cost": self.__dict__["_h"].cost_usd,
                "custom_llm_provider": self.__dict__["_h"].provider}


class ChatCompletionChunk(_Record):
    """One streamed event, in openai-python's ChatCompletionChunk shape; its
    choices are made when first read."""

    __slots__ = ("id", "object", "created", "model", "choices", "usage",
                 "system_fingerprint", "_delta")
    _public = ("id", "object", "created", "model", "choices", "usage", "system_fingerprint")

    def __init__(self, id, model, created, delta, usage=None):
        self.id = id
        self.object = "chat.completion.chunk"
        self.created = created
        self.model = model
        self._delta = delta
        self.usage = usage
        self.system_fingerprint = None

    def __getattr__(self, name):
        # Reached only while the choices slot is unset.
        if name != "choices":
            raise AttributeError(name)
        delta = self._delta
        if delta is None:
            choices = []
        elif delta.__class__ is str:
            choices = [ChunkChoice(0, Delta(delta, None), None)]
        else:
            text, index, finish, tool_index, tool_id, tool_name, tool_args = delta
            calls = None
            if tool_index >= 0:
                calls = [Obj(index=tool_index, id=tool_id, type="function" if tool_id else None,
                             function=Obj(name=tool_name, arguments=tool_args or ""))]
            choices = [ChunkChoice(index, Delta(text or None, calls), finish)]
        self.choices = choices
        return choices

    def _fields(self):
        return {k: getattr(self, k) for k in self._public}


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
        self.__dict__["_h"] = handle

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
        self.__dict__["_h"] = handle

    @property
    def llmring(self):
        return llmring_info(self.__dict__["_h"])
