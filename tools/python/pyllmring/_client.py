"""The clients: AsyncOpenAI and OpenAI over one engine.

How requests meet the event loop: each (client, loop) pair has a reaper, a
``_core.Channel`` whose eventfd is registered once with ``loop.add_reader``.
The engine's thread only copies results and deltas into the channel and
writes the eventfd (C, no Python). On readiness the reaper drains the channel
in batches and resolves asyncio futures, or hands deltas to streams: no
Task per request. Inside a running loop create() sends at once and returns
an _Eager future that the reaper resolves with the response itself (C,
_core_eager.c); each reaper's EagerWindow keeps at most `window` of them in
the engine and sends the rest as results come back. Synchronous calls use a
channel per thread and wait on it with the GIL released, so they need no
loop and work inside one."""

from __future__ import annotations

import asyncio
import collections.abc
import functools
import json
import os
import threading

from . import _core
from ._errors import APIConnectionError, ClientClosedError, from_handle
from ._streams import AsyncStream, Stream
from ._types import ChatCompletion, Completion, CreateEmbeddingResponse
from ._types import _Access

__all__ = ["AsyncOpenAI", "OpenAI", "AsyncStream", "Stream", "AsyncSession", "Session"]  # streams: _streams.py

_Future = asyncio.Future
_get_running_loop = asyncio.get_running_loop
# Events one drain takes, and drains per wake-up before the loop gets a turn
# back (the channel signals itself again when some are left).
REAP_MAX = 512
REAP_ROUNDS = 16


class _Reaper:
    """One loop's side of a client: its channel, registered with the loop."""

    __slots__ = ("loop", "chan", "fd", "reap_max", "new_future", "extra", "window")

    def __init__(self, loop, reap_max, engine, window):
        self.loop = loop
        # create()'s requests in the engine at most (the rest wait, built,
        # and are sent as results come back): gather over N calls then
        # costs the engine's memory of `window` requests, not of N.
        self.window = _core.EagerWindow(engine, window)
        # loop.create_future without its Python frame when it is asyncio's
        # own (a partial is C); any other loop's (uvloop, ...) as it is.
        if getattr(type(loop), "create_future", None) is asyncio.BaseEventLoop.create_future:
            self.new_future = functools.partial(_Future, loop=loop)
        else:
            self.new_future = loop.create_future
        self.chan = _core.Channel()
        self.fd = self.chan.fileno()
        self.reap_max = reap_max
        # Channel.reap is the reader callback itself: no Python frame per
        # wake-up; it resumes the woken streams' tasks after each round.
        loop.add_reader(self.fd, self.chan.reap, reap_max, _Future, REAP_ROUNDS)
        self.extra = set()  # the paced batches' own channels, registered as well

    def add_channel(self):
        """A channel of its own for one paced batch (its want is raised, so
        it must not carry other requests' events), read by this loop."""
        chan = _core.Channel()
        self.loop.add_reader(chan.fileno(), chan.reap, self.reap_max, _Future, REAP_ROUNDS)
        self.extra.add(chan)
        return chan

    def remove_channel(self, chan):
        if chan in self.extra:
            self.extra.discard(chan)
            try:
                self.loop.remove_reader(chan.fileno())
            except (RuntimeError, ValueError, OSError):
                pass  # the loop is closed already

    def pending(self):
        return self.chan.pending() or any(c.pending() for c in self.extra)

    def on_ready(self):
        # Draining from inside a task (close()): dispatch, which schedules
        # the woken streams' tasks rather than running them.
        # Channel.dispatch hands each event to its token: a future is
        # resolved with None (its awaiter holds the handle; the future does
        # not, so the two make no reference cycle), streams and batch slots
        # get _done(handle) / _delta(delta).
        for chan in (self.chan, *self.extra):
            dispatch = chan.dispatch
            for _ in range(REAP_ROUNDS):
                if not dispatch(self.reap_max, _Future):
                    break

    def detach(self):
        for chan in list(self.extra):
            self.remove_channel(chan)
        try:
            self.loop.remove_reader(self.fd)
        except (RuntimeError, ValueError, OSError):
            pass  # the loop is closed already


def _as_messages(messages):
    """messages as the C side takes them: dicts (response objects, such as
    a reply's message appended to a history, become dicts)."""
    if messages is None:
        return None
    for m in messages:
        if m.__class__ is not dict:
            break
    else:
        return messages
    out = []
    for m in messages:
        if isinstance(m, _Access):
            m = m.model_dump(exclude_none=True)
        elif not isinstance(m, dict) and hasattr(m, "model_dump"):
            m = m.model_dump(exclude_none=True)
        out.append(m)
    return out


class _Options:
    """Per-call options common to every request, split from the body's."""

    __slots__ = ("headers", "timeout", "max_retries", "include_usage", "n")

    def __init__(self, core, params, extra_headers, extra_body, timeout, max_retries):
        headers = core.default_headers
        if extra_headers:
            headers = {**headers, **extra_headers} if headers else dict(extra_headers)
        self.headers = headers or None
        self.timeout = timeout
        self.max_retries = max_retries
        if extra_body:
            params.update(extra_body)
        so = params.pop("stream_options", None)
        self.include_usage = bool(so and so.get("include_usage"))
        n = params.get("n")
        self.n = n if isinstance(n, int) and n > 1 else 1


def _options(core, params, extra_headers, extra_body, timeout, max_retries):
    """A call's options; the shared plain ones when it sets nothing."""
    if (extra_headers is None and extra_body is None and timeout is None and max_retries is None
            and "stream_options" not in params and "n" not in params):
        return core.plain
    return _Options(core, params, extra_headers, extra_body, timeout, max_retries)


_CACHE_MODES = {"readwrite": 0, "read": 1, "write": 2, "off": 3}  # enum lr_cache_mode


def _cache_mode(cache_path, mode):
    """cache_mode as the CLI's --cache-mode names it, for lr_config.cache_mode."""
    if mode is None:
        return 0
    if cache_path is None:
        raise ValueError("cache_mode needs cache_path")
    try:
        return _CACHE_MODES[mode]
    except (KeyError, TypeError):
        raise ValueError(f"cache_mode must be readwrite, read, write or off, not {mode!r}") from None


class _Core:
    """The engine and what every front end shares."""

    def __init__(self, *, base_url=None, api_key=None, max_retries=2, timeout=600.0,
                 max_in_flight=64, rpm=None, tpm=None, connect_timeout=None,
                 idle_timeout=None, prices_file=None, ca_file=None, insecure=False,
                 default_headers=None, organization=None, project=None,
                 max_conns_per_origin=0, reap_max=REAP_MAX, cache_path=None,
                 cache_mode=None):
        if isinstance(timeout, (int, float)) or timeout is None:
            total = float(timeout) if timeout else 600.0
        else:
            raise TypeError("timeout must be a number of seconds")
        try:
            self.engine = _core.Engine(base_url=base_url, api_key=api_key,
                                       max_in_flight=max_in_flight, max_retries=max_retries,
                                       timeout=total, connect_timeout=connect_timeout,
                                       idle_timeout=idle_timeout, rpm=rpm, tpm=tpm,
                                       prices_file=prices_file, ca_file=ca_file,
                                       insecure=insecure,
                                       max_conns_per_origin=max_conns_per_origin,
                                       cache_path=None if cache_path is None
                                       else os.fspath(cache_path),
                                       cache_mode=_cache_mode(cache_path, cache_mode))
        except _core.EngineError as e:
            raise APIConnectionError(str(e), code=getattr(e, "code", None)) from None
        headers = dict(default_headers or {})
        if organization:
            headers["OpenAI-Organization"] = organization
        if project:
            headers["OpenAI-Project"] = project
        self.default_headers = headers
        # The options of a call that sets none of its own, made once.
        self.plain = _Options(self, {}, None, None, None, None)
        self.base_url = base_url
        self.max_retries = max_retries
        self.timeout = total
        self.reap_max = reap_max
        # Items a batch keeps in the engine at once: enough to keep every
        # slot busy while the reaper refills, few enough that a batch's
        # memory does not grow with its input.
        self.window = max(2 * max_in_flight, 256)
        self.max_in_flight = max_in_flight
        self.reapers = {}            # loop -> _Reaper
        self.local = threading.local()  # .chan: this thread's channel for sync calls
        self.closed = False
        self.lock = threading.Lock()

    # -- where results arrive

    def reaper(self):
        loop = asyncio.get_running_loop()
        r = self.reapers.get(loop)
        if r is None:
            if self.closed:
                raise ClientClosedError("the client is closed", code="cancelled")
            r = self.reapers[loop] = _Reaper(loop, self.reap_max, self.engine, self.window)
        return r

    def sync_channel(self):
        chan = getattr(self.local, "chan", None)
        if chan is None:
            chan = self.local.chan = _core.Channel()
        return chan

    def submit(self, chan, token, model, messages, params, opts, stream=False,
               endpoint="chat", input=None, prompt=None, window=None):
        if self.closed:
            raise ClientClosedError("the client is closed", code="cancelled")
        return self.engine.submit(chan, token, model, _as_messages(messages), params or None,
                                  endpoint=endpoint, stream=stream, headers=opts.headers,
                                  max_retries=opts.max_retries, timeout=opts.timeout,
                                  input=input, prompt=prompt, window=window)

    def outcome(self, h, kind="chat", n=1, model=None):
        """The response object for a completed handle, or raises its error."""
        if h.error:
            raise from_handle(h, self.closed)
        if kind == "chat":
            return ChatCompletion(h, n, model)
        if kind == "completions":
            return Completion(h, model)
        return CreateEmbeddingResponse(h)

    def outcome_or_error(self, h, kind="chat", n=1, model=None):
        if h.error:
            return from_handle(h, self.closed)
        if kind == "chat":
            return ChatCompletion(h, n, model)
        return CreateEmbeddingResponse(h)

    # -- waiting without a loop

    def wait_sync(self, chan, pending):
        """Dispatches this thread's channel until pending() is false. The
        wait releases the GIL in short slices, so Ctrl-C interrupts it."""
        while pending():
            if chan.dispatch(REAP_MAX, _Future):
                continue
            chan.wait(None)

    # -- accounting

    def usage(self):
        if self.closed:
            return self.final_usage  # as it stood when the client closed
        return self.engine.usage()

    def price(self, model, batch=False):
        if self.closed:
            raise ClientClosedError("the client is closed", code="cancelled")
        p = self.engine.batch_price(model) if batch else self.engine.price(model)
        if p is None:
            return None
        return {"input": p[0], "cached_input": p[1], "output": p[2]}

    def stats(self):
        if self.closed:
            return self.final_stats
        return self.engine.stats()

    # -- shutting down

    def close_engine(self):
        with self.lock:
            if self.closed:
                return False
            # The figures are kept first: usage() and stats() answer after.
            self.final_usage = self.engine.usage()
            self.final_stats = self.engine.stats()
            self.closed = True
        # Cancels what is in flight; their done events reach their channels.
        self.engine.close()
        return True

    def drain_reapers(self, current_loop):
        """After close: every loop's channel drained (on its own thread) and
        detached."""
        for loop, r in list(self.reapers.items()):
            if loop is current_loop:
                while r.pending():
                    r.on_ready()
                r.window.close()  # what still waits fails as closed
                r.detach()
            elif not loop.is_closed():
                def finish(r=r):
                    while r.pending():
                        r.on_ready()
                    r.window.close()
                    r.detach()
                try:
                    loop.call_soon_threadsafe(finish)
                except RuntimeError:
                    pass
        self.reapers.clear()


# ---- bulk -------------------------------------------------------------------


def _request_of(kwargs, default_model):
    """One batch item: kwargs of create (a dict with messages), or a bare
    list of messages."""
    if isinstance(kwargs, (list, tuple)):
        kwargs = {"messages": kwargs}
    else:
        kwargs = dict(kwargs)
    if "model" not in kwargs and default_model is not None:
        kwargs["model"] = default_model
    return kwargs


def _submit_python(group, slot, item):
    """A batch item the C path declines (per-call options, response objects
    among its messages): (handle, n, model), or raises its error, which the
    group puts in the item's place."""
    core = group.core
    r = _request_of(item, group.default_model)
    n = r.get("n")
    n = n if isinstance(n, int) and n > 1 else 1
    model = r.pop("model", None)
    messages = r.pop("messages", None)
    if r.pop("stream", False):
        raise ValueError("batch requests cannot stream")
    opts = _options(core, r, r.pop("extra_headers", None), r.pop("extra_body", None),
                    r.pop("timeout", None), r.pop("max_retries", None))
    return core.submit(group.channel, slot, model, messages, r, opts), n, model


# The batch group is C (_core_group.c): items are taken from their iterable
# as room frees up, at most core.window in the engine at once (in flight or
# queued), so the memory of a batch follows the window, not the input; a
# completion stores its outcome and submits the next items from the reaper,
# before the loop wakes the waiter. No Python runs per item except these
# hooks' rare paths.
_core.set_batch_hooks(submit_python=_submit_python, from_handle=from_handle,
                      closed_error=ClientClosedError, chat_completion=ChatCompletion)


def _group(core, chan, items, model, as_completed=False, common=None):
    """A batch group on chan with its first items taken."""
    g = _core.BatchGroup(core, core.engine, chan, items, model, core.plain.headers,
                         core.window, as_completed, common)
    g.fill()
    return g


# How long a batch's waiter sleeps for a batch of completions before it
# takes what there is (Channel.pump, the paced channel's flush): the
# engine's queue behind the wire keeps the wire busy meanwhile.
BATCH_LINGER = 0.02


async def _batch_async(core, requests, model, common=None):
    reaper = core.reaper()
    loop = reaper.loop
    # Its own channel, paced: the loop wakes once `want` completions are
    # queued (BatchGroup.want), not at each, and a tick every BATCH_LINGER
    # takes what came if fewer did.
    chan = reaper.add_channel()
    try:
        group = _group(core, chan, requests, model, common=common)
    except BaseException:
        reaper.remove_channel(chan)
        raise
    group.pace(core.max_in_flight)
    tick = None

    def linger():
        nonlocal tick
        chan.flush()
        tick = loop.call_later(BATCH_LINGER, linger)

    tick = loop.call_later(BATCH_LINGER, linger)
    try:
        while group.pending:
            if not group.live:
                group.fill()  # every item taken so far was refused in place
                continue
            group.waiter = reaper.new_future()
            await group.waiter
    except asyncio.CancelledError:
        group.cancel_all()
        raise
    finally:
        tick.cancel()
        _retire(reaper, chan, group)
    return group.outcome()


def _retire(reaper, chan, group):
    """The batch's channel leaves its loop once nothing of the group is left
    in the engine (cancelled requests still complete, into it)."""
    if not group.live:
        reaper.remove_channel(chan)
        return
    # The group's want follows what is left (BatchGroup.pace), so the last
    # cancelled one's completion wakes this future.
    fut = reaper.new_future()
    fut.add_done_callback(lambda f: reaper.remove_channel(chan))
    group.waiter = fut


def _batch_sync(core, requests, model, common=None):
    chan = core.sync_channel()
    group = _group(core, chan, requests, model, common=common)
    # A wake-up per batch of completions, not per completion: the engine's
    # thread writes the eventfd only once the group's want are queued.
    group.pace(core.max_in_flight)
    try:
        while group.pending:
            if not group.live:
                group.fill()  # every item taken so far was refused in place
                continue
            chan.pump(REAP_MAX, _Future, 0, BATCH_LINGER)
    except BaseException:
        group.cancel_all()
        raise
    return group.outcome()


# ---- the resources ------------------------------------------------------------


class _Eager(_Future):
    """What create() returns when called inside a running loop: the request
    is submitted at once and this asyncio future is resolved by the reaper
    (C, _core_eager.c) with the response or the exception, so gather,
    wait_for, shield and ensure_future take it without a Task and no Python
    runs per request once it completes. It is also a coroutine for what
    wants one (create_task, TaskGroup, asyncio.iscoroutine): send, throw
    and close behave as Future.__await__'s iterator. Cancelling it cancels
    the request. Not GC-tracked while in flight, nor once resolved with a
    response, until something is stored on it (see _core_eager.c)."""

    __slots__ = ("_h",)  # the Handle while in flight, then None

    def cancel(self, msg=None):
        if not _Future.cancel(self, msg):
            return False
        h = self._h
        if h is not None:
            self._h = None
            h.cancel()  # its done event finds the future cancelled
        return True

    def __setattr__(self, name, value):
        # A future resolved with a response is left out of the cyclic GC
        # (_core_eager.c); something stored on it could make a cycle. A
        # Task's flag (a bool, set at each await) cannot.
        if name != "_asyncio_future_blocking":
            _track(self)
        _Future.__setattr__(self, name, value)

    # The coroutine protocol, as Future.__await__'s iterator (which holds
    # no state of its own, so a fresh one per call is the same iterator).
    def send(self, value):
        return _Future.__await__(self).send(value)

    def throw(self, *args):
        return _Future.__await__(self).throw(*args)

    def close(self):
        pass


collections.abc.Coroutine.register(_Eager)


def _eager_fail(fut, core, h):
    """A failed request's future gets its exception; one cancelled by
    close() is not logged as never retrieved when nobody awaited it."""
    e = from_handle(h, core.closed)
    fut.set_exception(e)
    if e.__class__ is ClientClosedError:
        fut._log_traceback = False


def _eager_closed(fut):
    """A request that waited in the window when the client closed."""
    fut.set_exception(ClientClosedError("the client is closed", code="cancelled"))
    fut._log_traceback = False


_EAGER_CHAT, _EAGER_COMPLETION, _EAGER_EMBEDDING = 1, 2, 3  # CORE_EAGER_*
_core.set_eager_hooks(future_type=_Eager, fail=_eager_fail, closed=_eager_closed,
                      chat=ChatCompletion,
                      completion=lambda h, n, model: Completion(h, model),
                      embedding=lambda h, n, model: CreateEmbeddingResponse(h))
_eager = _core.eager
_track = _core.track
_running_loop = asyncio._get_running_loop  # None outside a loop (C)


class _AsyncCompletions:
    def __init__(self, core):
        self._core = core

    def create(self, *, model, messages, stream=False, timeout=None, max_retries=None,
               extra_headers=None, extra_body=None, extra_query=None, **params):
        """Inside a running loop the request is sent now and an _Eager
        future returned; outside one (asyncio.run(create(...))), and for
        streams, a coroutine that sends it when first awaited."""
        loop = _running_loop()
        if loop is None or stream:
            return self._create(model, messages, stream, timeout, max_retries, extra_headers,
                                extra_body, params)
        core = self._core
        fut = _Eager(loop=loop)
        try:
            reaper = core.reapers.get(loop)  # core.reaper(), inlined
            if reaper is None:
                reaper = core.reaper()
            if (extra_headers is None and extra_body is None and timeout is None
                    and max_retries is None and "stream_options" not in params
                    and "n" not in params):
                opts = core.plain  # _options, inlined for the common call
            else:
                opts = _Options(core, params, extra_headers, extra_body, timeout, max_retries)
            h = NotImplemented
            if opts is core.plain and not core.closed:
                # The common call: one positional C call, no option handling.
                h = core.engine.submit_chat(reaper.chan, fut, model, messages, params or None,
                                            opts.headers, reaper.window)
            if h is NotImplemented:
                h = core.submit(reaper.chan, fut, model, messages, params, opts,
                                window=reaper.window)
        except Exception as e:
            fut._h = None
            fut.set_exception(e)
            return fut
        return _eager(fut, h, core, _EAGER_CHAT, opts.n, model)

    async def _create(self, model, messages, stream, timeout, max_retries, extra_headers,
                      extra_body, params):
        core = self._core
        if not stream:
            return await self.create(model=model, messages=messages, timeout=timeout,
                                     max_retries=max_retries, extra_headers=extra_headers,
                                     extra_body=extra_body, **params)
        reaper = core.reaper()
        opts = _options(core, params, extra_headers, extra_body, timeout, max_retries)
        s = AsyncStream(core, reaper.loop, model, opts.include_usage)
        s._h_live = core.submit(reaper.chan, s, model, messages, params, opts, stream=True)
        await s._first()
        return s


class _AsyncChat:
    def __init__(self, core):
        self.completions = _AsyncCompletions(core)


class _AsyncEmbeddings:
    def __init__(self, core):
        self._core = core

    def create(self, *, model, input, timeout=None, max_retries=None,
               extra_headers=None, extra_body=None, **params):
        """As chat.completions.create: sent now inside a running loop."""
        loop = _running_loop()
        if loop is None:
            return _later(self.create, model=model, input=input, timeout=timeout,
                          max_retries=max_retries, extra_headers=extra_headers,
                          extra_body=extra_body, **params)
        core = self._core
        fut = _Eager(loop=loop)
        try:
            reaper = core.reaper()
            opts = _options(core, params, extra_headers, extra_body, timeout, max_retries)
            if isinstance(input, str):
                input = [input]
            h = core.submit(reaper.chan, fut, model, None, params, opts, endpoint="embeddings",
                            input=list(input), window=reaper.window)
        except Exception as e:
            fut._h = None
            fut.set_exception(e)
            return fut
        return _eager(fut, h, core, _EAGER_EMBEDDING, 1, model)


async def _later(create, **kw):
    """create() called outside a running loop: sent when first awaited."""
    return await create(**kw)


def _one_prompt(prompt, stream):
    """The legacy endpoint's prompt as the engine takes it: one string."""
    if stream:
        raise NotImplementedError("pyllmring: completions.create(stream=True) is not supported; "
                                  "use chat.completions.create(stream=True)")
    if isinstance(prompt, (list, tuple)):
        if len(prompt) != 1 or not isinstance(prompt[0], str):
            raise NotImplementedError("pyllmring: completions.create takes one prompt string "
                                      "(a list of prompts or of token ids is not supported)")
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise TypeError("prompt must be a string")
    return prompt


class _AsyncTextCompletions:
    """``client.completions``: OpenAI's legacy text completions (POST
    /completions, a prompt instead of messages), OpenAI-compatible servers."""

    def __init__(self, core):
        self._core = core

    def create(self, *, model, prompt, stream=False, timeout=None, max_retries=None,
               extra_headers=None, extra_body=None, extra_query=None, **params):
        """As chat.completions.create: sent now inside a running loop."""
        loop = _running_loop()
        if loop is None:
            return _later(self.create, model=model, prompt=prompt, stream=stream,
                          timeout=timeout, max_retries=max_retries, extra_headers=extra_headers,
                          extra_body=extra_body, **params)
        core = self._core
        fut = _Eager(loop=loop)
        try:
            prompt = _one_prompt(prompt, stream)
            reaper = core.reaper()
            opts = _options(core, params, extra_headers, extra_body, timeout, max_retries)
            h = core.submit(reaper.chan, fut, model, None, params, opts, endpoint="completions",
                            prompt=prompt, window=reaper.window)
        except Exception as e:
            fut._h = None
            fut.set_exception(e)
            return fut
        return _eager(fut, h, core, _EAGER_COMPLETION, 1, model)


class _SyncTextCompletions:
    def __init__(self, core):
        self._core = core

    def create(self, *, model, prompt, stream=False, timeout=None, max_retries=None,
               extra_headers=None, extra_body=None, extra_query=None, **params):
        core = self._core
        prompt = _one_prompt(prompt, stream)
        chan = core.sync_channel()
        opts = _options(core, params, extra_headers, extra_body, timeout, max_retries)
        box = _Box()
        h = core.submit(chan, box, model, None, params, opts, endpoint="completions",
                        prompt=prompt)
        _wait_box(core, chan, box, h)
        return core.outcome(h, "completions", 1, model)


class _SyncCompletions:
    def __init__(self, core):
        self._core = core

    def create(self, *, model, messages, stream=False, timeout=None, max_retries=None,
               extra_headers=None, extra_body=None, extra_query=None, **params):
        core = self._core
        chan = core.sync_channel()
        opts = _options(core, params, extra_headers, extra_body, timeout, max_retries)
        if stream:
            s = Stream(core, chan, model, opts.include_usage)
            s._h_live = core.submit(chan, s, model, messages, params, opts, stream=True)
            s._pump()
            if not s._q and s._handle is not None and s._handle.error:
                raise from_handle(s._handle, core.closed)
            return s
        box = _Box()
        h = core.submit(chan, box, model, messages, params, opts)
        _wait_box(core, chan, box, h)
        return core.outcome(h, "chat", opts.n, model)


class _Box:
    """A synchronous call's token."""

    __slots__ = ("handle",)

    def __init__(self):
        self.handle = None

    def _done(self, h):
        self.handle = h

    def _delta(self, d):
        pass


def _wait_box(core, chan, box, h):
    try:
        core.wait_sync(chan, lambda: box.handle is None)
    except BaseException:
        h.cancel()  # Ctrl-C: the request ends too; its event is dropped later
        raise


class _SyncChat:
    def __init__(self, core):
        self.completions = _SyncCompletions(core)


class _SyncEmbeddings:
    def __init__(self, core):
        self._core = core

    def create(self, *, model, input, timeout=None, max_retries=None, extra_headers=None,
               extra_body=None, **params):
        core = self._core
        chan = core.sync_channel()
        opts = _options(core, params, extra_headers, extra_body, timeout, max_retries)
        if isinstance(input, str):
            input = [input]
        box = _Box()
        h = core.submit(chan, box, model, None, params, opts, endpoint="embeddings",
                        input=list(input))
        _wait_box(core, chan, box, h)
        return core.outcome(h, "embeddings")


# ---- sessions ---------------------------------------------------------------


class _SessionBase:
    def __init__(self, core, model, system):
        self._core = core
        self._s = _core.Session(core.engine, model, system)
        self.model = model

    @property
    def history(self):
        """The conversation so far, as a list of OpenAI messages."""
        return json.loads(self._s.history())

    @property
    def turns(self):
        return self._s.turns


class AsyncSession(_SessionBase):
    """A conversation: each send appends the user's text, sends the whole
    history and, once the reply succeeds, appends it."""

    async def send(self, text):
        core = self._core
        reaper = core.reaper()
        fut = reaper.new_future()
        h = self._s.send(reaper.chan, fut, text)
        try:
            await fut
        except asyncio.CancelledError:
            h.cancel()
            raise
        return core.outcome(h, "chat", 1, self.model)


class Session(_SessionBase):
    def send(self, text):
        core = self._core
        chan = core.sync_channel()
        box = _Box()
        h = self._s.send(chan, box, text)
        _wait_box(core, chan, box, h)
        return core.outcome(h, "chat", 1, self.model)


# ---- the clients --------------------------------------------------------------


class _ClientBase:
    def __init__(self, *, base_url=None, api_key=None, max_retries=2, timeout=600.0,
                 max_in_flight=64, rpm=None, tpm=None, _shared_core=None, **options):
        if _shared_core is not None:
            self._core = _shared_core  # LiteLLM's functions: sync and async on one engine
        else:
            self._core = _Core(base_url=base_url, api_key=api_key, max_retries=max_retries,
                               timeout=timeout, max_in_flight=max_in_flight, rpm=rpm,
                               tpm=tpm, **options)
        self.base_url = base_url
        self.max_retries = max_retries
        self.timeout = self._core.timeout

    def usage(self):
        """Tokens and USD so far, in total and per model; consistent from
        any thread while requests run."""
        return self._core.usage()

    def price(self, model):
        """USD per million tokens (input, cached_input, output), or None."""
        return self._core.price(model)

    def batch_price(self, model):
        """USD per million tokens through the provider's batch API (OpenAI
        Batch, Anthropic Message Batches, Gemini Batch Mode), as price()
        gives them; None when the model is unknown or has no batch rates."""
        return self._core.price(model, batch=True)

    def stats(self):
        """Connections opened and reused, TLS handshakes, retries."""
        return self._core.stats()

    @property
    def ring_mode(self):
        return self._core.engine.ring_mode


class AsyncOpenAI(_ClientBase):
    """openai-python's AsyncOpenAI over the llmring engine. Models are
    "provider/model" strings (LiteLLM's routing); each provider speaks its
    own dialect."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.chat = _AsyncChat(self._core)
        self.completions = _AsyncTextCompletions(self._core)
        self.embeddings = _AsyncEmbeddings(self._core)

    def session(self, model, system=None):
        return AsyncSession(self._core, model, system)

    async def batch(self, requests, *, model=None):
        """Runs every request (create's kwargs, or a list of messages with
        model=; any iterable, taken as room frees up) and returns their
        outcomes in input order: a response, or the exception in its place.
        No semaphore and no Task per request: at most ``window`` items are
        in the engine at once, which queues beyond its concurrency."""
        return await _batch_async(self._core, requests, model)

    async def as_completed(self, requests, *, model=None):
        """Yields (index, outcome) as each request completes; an outcome is
        a response or the exception of a failed request. requests may be
        any iterable (a generator of millions): items are taken as room
        frees up and outcomes are not kept once yielded, so memory stays
        flat."""
        core = self._core
        reaper = core.reaper()
        group = _group(core, reaper.chan, requests, model, as_completed=True)
        finished = False
        try:
            while True:
                for pair in group:  # the outcomes ready now, each once
                    yield pair
                group.fill()
                if group.ready:
                    continue  # items refused in place while filling
                if group.failure is not None:
                    raise group.failure
                if not group.pending:
                    break
                group.waiter = reaper.new_future()
                await group.waiter
            finished = True
        finally:
            if not finished:
                group.cancel_all()

    async def close(self):
        """Cancels what is outstanding, waits for every handle, frees the
        engine."""
        core = self._core
        loop = asyncio.get_running_loop()
        if core.close_engine():
            core.drain_reapers(loop)

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()


class OpenAI(_ClientBase):
    """The synchronous client: no event loop needed (it works inside a
    running one too), the GIL released while it waits, Ctrl-C honoured."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.chat = _SyncChat(self._core)
        self.completions = _SyncTextCompletions(self._core)
        self.embeddings = _SyncEmbeddings(self._core)

    def session(self, model, system=None):
        return Session(self._core, model, system)

    def batch(self, requests, *, model=None):
        """As AsyncOpenAI.batch, blocking."""
        return _batch_sync(self._core, requests, model)

    def close(self):
        self._core.close_engine()
        chan = getattr(self._core.local, "chan", None)
        if chan is not None:
            chan.dispatch(-1, _Future)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
