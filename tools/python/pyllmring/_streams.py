"""The streams: AsyncStream (``async for``; its per-event part is C, in
_core.AsyncStreamBase) and the synchronous Stream. Both get their deltas and
their done event from the client's channel, the deltas always first."""

from __future__ import annotations

import asyncio
import collections
import time

from . import _core
from ._errors import from_handle
from ._types import ChatCompletion, ChatCompletionChunk, Usage

__all__ = ["AsyncStream", "Stream"]


class _StreamBase:
    """What both stream kinds share: the outcome once the done event came
    (after every delta). The queue of deltas is each kind's own: a deque
    (Stream), the C base's ring (AsyncStream)."""

    def __init__(self, core, model, include_usage):
        self._core = core
        self._handle = None
        self._h_live = None          # the request's handle while it runs
        self._model = model or ""
        self._created = int(time.time())
        self._id = ""
        self._include_usage = include_usage
        self._usage_sent = False
        self._closed = False

    def _chunk(self, delta):
        return ChatCompletionChunk(self._id, self._model, self._created, delta)

    def _tail(self):
        """After the last delta: the usage chunk when asked for, the error
        when the request failed, else the end."""
        h = self._handle
        if h.error:
            if self._closed and h.error_name == "cancelled":
                return None
            raise from_handle(h, self._core.closed)
        if self._include_usage and not self._usage_sent:
            self._usage_sent = True
            usage = Usage(h.usage)
            return ChatCompletionChunk(self._id, h.model or self._model, self._created, None,
                                       usage)
        return None

    @property
    def response(self):
        """The completed request's result (None while it runs)."""
        return self._handle

    def _final(self):
        h = self._handle
        if h.error:
            raise from_handle(h, self._core.closed)
        return ChatCompletion(h, 1, self._model)


class AsyncStream(_core.AsyncStreamBase, _StreamBase):
    """``async for chunk in stream``; ``async with stream``; ``await
    stream.close()``; ``await stream.get_final_completion()`` gives the
    assembled chat.completion.

    The C base holds the queue (a ring), the waiter, the loop, the outcome and the
    chunks' fields, and does the per-event part: ``_delta`` (the reaper
    queues a delta and wakes the waiter) and ``__anext__`` (its awaitable
    gives a queued event at once, waits on a StreamWaiter while the queue
    is empty, and calls _end once the request ended)."""

    def __init__(self, core, loop, model, include_usage):
        super().__init__(core, model, include_usage)
        self._loop = loop

    # The reaper's side (the loop's thread); _delta is the base's, and the
    # base wakes the waiter once _done returns.
    def _done(self, h):
        self._handle = h
        self._h_live = None

    async def _wait(self):
        try:
            await self._new_waiter()
        except asyncio.CancelledError:
            self._waiter = None
            self._cancel()
            raise

    def _cancel(self):
        h = self._h_live
        if h is not None:
            h.cancel()

    async def _first(self):
        """Waits for the first event, so that a request refused at once
        (401, 429 after retries, ...) raises from create() as openai-python
        does."""
        while not self._queued and self._handle is None:
            await self._wait()
        if not self._queued and self._handle is not None and self._handle.error:
            raise from_handle(self._handle, self._core.closed)

    def _end(self):
        """__anext__ with nothing queued once the request ended or the
        stream was closed: the tail chunk, or the end."""
        if self._handle is not None:
            last = self._tail()
            if last is not None:
                return last
        raise StopAsyncIteration

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()

    async def close(self):
        """Stops the stream: the request is cancelled if still running."""
        if self._handle is None:
            self._closed = True
            self._cancel()
            while self._handle is None:
                await self._wait()
        self._clear_queue()
        self._release()

    async def get_final_completion(self):
        """Reads the rest of the stream and returns the assembled
        chat.completion (text, tool calls, usage)."""
        while self._handle is None:
            self._clear_queue()
            await self._wait()
        self._clear_queue()
        return self._final()

    async def until_done(self):
        await self.get_final_completion()


class Stream(_StreamBase):
    """The synchronous stream: ``for chunk in stream``, ``with stream``."""

    def __init__(self, core, chan, model, include_usage):
        super().__init__(core, model, include_usage)
        self._q = collections.deque()
        self._chan = chan

    def _delta(self, d):
        self._q.append(d)

    def _done(self, h):
        self._handle = h
        self._h_live = None

    def _pump(self):
        try:
            self._core.wait_sync(self._chan, lambda: not self._q and self._handle is None)
        except BaseException:
            h = self._h_live
            if h is not None:
                h.cancel()
            raise

    def __iter__(self):
        return self

    def __next__(self):
        if not self._q and self._handle is None:
            self._pump()
        if self._q:
            return ChatCompletionChunk(self._id, self._model, self._created, self._q.popleft())
        if self._closed:
            raise StopIteration
        last = self._tail()
        if last is None:
            raise StopIteration
        return last

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self._handle is None:
            self._closed = True
            h = self._h_live
            if h is not None:
                h.cancel()
            self._core.wait_sync(self._chan, lambda: self._handle is None)
        self._q.clear()

    def get_final_completion(self):
        while self._handle is None:
            self._q.clear()
            self._pump()
        self._q.clear()
        return self._final()

    def until_done(self):
        self.get_final_completion()
