"""pyllmring._core against `llmring mock` run as its own process: submit and
drain, streams, every result attribute, cancel, errors, accounting,
sessions, the channel's signalling, fork, 10,000 requests at once."""
import json
import os
import select
import time

import pytest

from pyllmring import _core

USER = [{"role": "user", "content": "hello there"}]
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "The weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]


@pytest.fixture
def engine(mock):
    e = _core.Engine(base_url=mock.url, api_key="test-key", max_retries=0)
    yield e
    e.close()


def collect(ch, done, timeout=10.0):
    """Events from ch until `done` done events came (or timeout s)."""
    events, seen = [], 0
    end = time.monotonic() + timeout
    while seen < done:
        left = end - time.monotonic()
        assert left > 0, f"only {seen} of {done} requests completed"
        ch.wait(left)
        for ev in ch.drain():
            events.append(ev)
            seen += ev[1] is not None
    return events


def one(ch, timeout=10.0):
    """The handle of the one request in flight on ch."""
    (ev,) = [e for e in collect(ch, 1, timeout) if e[1] is not None]
    return ev[1]


def readable(fd):
    return bool(select.select([fd], [], [], 0)[0])


def test_whole_reply_gives_every_result_attribute(engine):
    ch = _core.Channel()
    token = object()
    h = engine.submit(ch, token, "mock/m1", USER, {"max_tokens": 5, "temperature": 0.5})
    (tok, handle, delta), = collect(ch, 1)
    assert tok is token and handle is h and delta is None and h.token is token
    assert h.done() and h.error == 0 and h.error_name is None and h.error_message is None
    assert h.http_status == 200 and h.body_is_json and json.loads(h.body)["object"] == "chat.completion"
    assert len(h.text.split()) == 5 and h.finish_reason == "length" and not h.streamed
    assert h.request_id.startswith("req_mock_") and h.model == "m1" and h.provider == "mock"
    assert h.usage == (2, 5, 0)
    q, ttfb, total, ttft = h.timings
    assert 0 <= q <= ttfb <= total and total > 0 and ttft >= 0
    assert h.attempts == 1 and h.retry_after is None and h.tool_calls == [] and h.cost_usd is None


def test_stream_deltas_come_before_done_and_join_to_the_text(engine):
    ch = _core.Channel()
    h = engine.submit(ch, "s", "mock/m1", USER, stream=True)
    events = collect(ch, 1)
    assert events[-1][1] is h and all(e[1] is None for e in events[:-1])
    assert all(e[0] == "s" for e in events)
    texts = [d for _, _, d in events[:-1] if isinstance(d, str)]
    ends = [d for _, _, d in events[:-1] if isinstance(d, tuple)]
    # The role-only first chunk comes as an empty delta, then one per token.
    assert "".join(texts) == h.text and h.streamed and len(texts) == 17 and texts[0] == ""
    assert ends[-1] == ("", 0, "stop", -1, None, None, None)


def test_tool_calls_whole_and_streamed(engine):
    ch = _core.Channel()
    params = {"tools": TOOLS, "tool_choice": "auto"}
    h = engine.submit(ch, 1, "mock/m1", [{"role": "user", "content": "weather?"}], params)
    h = one(ch)
    assert h.finish_reason == "tool_calls"
    (cid, name, args), = h.tool_calls
    assert cid.startswith("call_mock_") and name == "get_weather"
    assert json.loads(args) == {"city": "Paris", "days": 3}
    engine.submit(ch, 2, "mock/m1", [{"role": "user", "content": "weather?"}], params, stream=True)
    events = collect(ch, 1)
    parts = [d for _, h2, d in events if h2 is None and isinstance(d, tuple) and d[3] == 0]
    assert "".join(p[6] for p in parts) == events[-1][1].tool_calls[0][2]
    assert parts[0][5] == "get_weather"


def test_tool_result_and_json_messages_are_sent(engine):
    ch = _core.Channel()
    msgs = [{"role": "developer", "content": "be brief"},
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": None, "tool_calls": [{
                "id": "call_1", "type": "function",
                "function": {"name": "get_weather", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
            {"role": "user", "content": [{"type": "text", "text": "and tomorrow"}]}]
    engine.submit(ch, 0, "mock/m1", msgs, {"tools": TOOLS, "stop": ["x", "y"], "seed": 3,
                                          "reasoning_effort": "low", "user": None})
    h = one(ch)
    assert h.error == 0 and h.finish_reason != "tool_calls"


def test_cancel_ends_a_request_in_flight(engine):
    ch = _core.Channel()
    h = engine.submit(ch, 0, "mock/m1", USER, headers={"x-mock-fault": "slow-headers"})
    assert not h.done()
    with pytest.raises(RuntimeError, match="not complete"):
        h.text
    h.cancel()
    assert one(ch) is h
    assert h.error == _core.LR_ECANCELLED and h.error_name == "cancelled"
    h.cancel()  # once complete: no effect


@pytest.mark.parametrize("fault,name,status", [("429", "rate_limited", 429),
                                               ("500", "server_error", 500),
                                               ("503", "overloaded", 503),
                                               ("malformed", "protocol_error", 200)])
def test_errors_carry_code_status_and_body(engine, fault, name, status):
    ch = _core.Channel()
    engine.submit(ch, 0, "mock/m1", USER, headers=[("x-mock-fault", fault)])
    h = one(ch)
    assert h.error < 0 and h.error_name == name and h.http_status == status
    assert h.error_message and h.body and h.text is None
    if fault == "429":
        assert h.retry_after == 1.0


def test_retries_count_attempts(engine):
    ch = _core.Channel()
    engine.submit(ch, 0, "mock/m1", USER, headers={"x-mock-fault": "500"}, max_retries=1)
    h = one(ch)
    assert h.error_name == "server_error" and h.attempts == 2
    assert engine.stats()["retries"] >= 1


def test_timeout_per_request(engine):
    ch = _core.Channel()
    engine.submit(ch, 0, "mock/m1", USER, headers={"x-mock-fault": "slow-headers"}, timeout=0.3)
    h = one(ch)
    assert h.error_name == "timeout"


def test_usage_price_and_stats(mock):
    e = _core.Engine(base_url=mock.url, api_key="k")
    ch = _core.Channel()
    for _ in range(3):
        e.submit(ch, 0, "mock/acct", USER, {"max_tokens": 4})
    collect(ch, 3)
    u = e.usage()
    assert u["requests"] == 3 and u["succeeded"] == 3 and u["failed"] == 0
    assert u["input_tokens"] == 6 and u["output_tokens"] == 12 and u["unpriced_models"] == 1
    m = u["models"]["acct"]
    assert m == {"provider": "mock", "requests": 3, "input_tokens": 6, "output_tokens": 12,
                 "cached_input_tokens": 0, "cost_usd": 0.0, "priced": False}
    inp, cached, out = e.price("openai/gpt-4o-mini")
    assert inp > 0 and out > inp and 0 <= cached <= inp
    assert e.price("mock/nothing-like-it") is None
    s = e.stats()
    assert s["requests_completed"] == 3 and s["connections_opened"] >= 1
    assert set(s) >= {"connections_reused", "stale_resends", "tls_full_handshakes",
                      "tls_resumed_handshakes", "retries"}
    assert isinstance(e.ring_mode, str)
    e.close()
    e.close()
    assert e.closed
    with pytest.raises(RuntimeError, match="closed"):
        e.submit(ch, 0, "mock/x", USER)


def test_close_cancels_what_is_in_flight(mock):
    e = _core.Engine(base_url=mock.url, api_key="k")
    ch = _core.Channel()
    hs = [e.submit(ch, i, "mock/m1", USER, headers={"x-mock-fault": "slow-headers"})
          for i in range(3)]
    e.close()
    got = collect(ch, 3)
    assert sorted(t for t, _, _ in got) == [0, 1, 2]
    assert all(h.error_name == "cancelled" for h in hs)


def test_sessions_keep_history(engine):
    ch = _core.Channel()
    s = _core.Session(engine, "mock/m1", system="be brief")
    s.send(ch, "t1", "hello")
    with pytest.raises(RuntimeError, match="in flight"):
        s.send(ch, "t2", "too soon")
    first = one(ch)
    s.send(ch, "t2", "again")
    second = one(ch)
    assert s.turns == 2
    hist = json.loads(s.history())
    assert [m["role"] for m in hist] == ["system", "user", "assistant", "user", "assistant"]
    assert hist[2]["content"] == first.text and hist[4]["content"] == second.text
    assert second.usage[0] > first.usage[0]  # the whole history was sent


def test_session_failed_turn_leaves_history(mock):
    e = _core.Engine(base_url=mock.url, api_key="k", max_retries=0)
    s = _core.Session(e, "mock/m1")
    ch = _core.Channel()
    s.send(ch, 0, "mock-fault:500")
    assert one(ch).error_name == "server_error"
    assert s.turns == 0 and s.history() == "[]"
    e.close()
    with pytest.raises(RuntimeError, match="closed"):
        s.send(ch, 0, "x")


def test_wait_times_out_and_wakes(engine):
    ch = _core.Channel()
    t0 = time.monotonic()
    assert ch.wait(0.2) is False
    assert 0.15 < time.monotonic() - t0 < 1.0
    assert ch.wait(0) is False and ch.pending() == 0
    engine.submit(ch, 0, "mock/m1", USER)
    assert ch.wait(10) is True and ch.pending() == 1
    assert len(ch.drain()) == 1 and ch.pending() == 0


def test_drain_max_signals_again_while_events_remain(engine):
    ch = _core.Channel()
    for i in range(5):
        engine.submit(ch, i, "mock/m1", USER)
    end = time.monotonic() + 10
    while ch.pending() < 5:
        assert time.monotonic() < end
        ch.wait(1)
    got = []
    while readable(ch.fileno()):
        batch = ch.drain(max=2)
        assert 1 <= len(batch) <= 2
        got += batch
    assert sorted(t for t, _, _ in got) == [0, 1, 2, 3, 4]
    assert ch.drain() == [] and not readable(ch.fileno())


def test_bad_arguments_raise_before_anything_is_sent(engine):
    ch = _core.Channel()
    bad = [
        (TypeError, dict(messages="hi")),
        (TypeError, dict(messages=["hi"])),
        (TypeError, dict(params={"max_tokens": "5"})),
        (TypeError, dict(params=[1])),
        (ValueError, dict(params={"stop": ["a", "b", "c", "d", "e"]})),
        (ValueError, dict(params={"tools": [{"type": "function"}]})),
        (ValueError, dict(endpoint="completions")),
        (ValueError, dict(endpoint="completions", prompt="a prompt and messages")),
        (ValueError, dict(prompt="a prompt for the chat endpoint")),
        (ValueError, dict(endpoint="responses")),
        (TypeError, dict(headers={"x": 1})),
        (ValueError, dict(headers={"x": "a\r\nb"})),
        (TypeError, dict(model=3)),
        (TypeError, dict(body=3)),
        (TypeError, dict(params={"response_format": object()})),
    ]
    for exc, kw in bad:
        args = {"model": "mock/m1", "messages": USER, **kw}
        with pytest.raises(exc):
            engine.submit(ch, 0, args.pop("model"), args.pop("messages"), **args)
    with pytest.raises(TypeError):
        engine.submit(object(), 0, "mock/m1", USER)
    assert engine.usage()["requests"] == 0 and ch.pending() == 0


def test_submit_item_reads_a_batch_item_in_place(engine):
    ch = _core.Channel()
    item = {"model": "mock/m1", "messages": USER, "max_tokens": 5, "n": 2, "seed": 7}
    before = dict(item)
    h, n, model = engine.submit_item(ch, "a", item, None, None)
    assert item == before                       # read, not popped
    assert (n, model) == (2, "mock/m1")
    h2, n2, model2 = engine.submit_item(ch, "b", USER, "mock/m2", {"x-extra": "1"})
    assert (n2, model2) == (1, "mock/m2")
    done = {ev[0]: ev[1] for ev in collect(ch, 2) if ev[1] is not None}
    assert done["a"] is h and done["b"] is h2 and not h.error and not h2.error
    # Per-call options and response objects in the messages: the Python path's.
    for key in ("extra_headers", "extra_body", "timeout", "max_retries", "stream",
                "stream_options", "extra_query"):
        assert engine.submit_item(ch, "c", {"messages": USER, key: None}, "mock/m",
                                  None) is NotImplemented
    assert engine.submit_item(ch, "c", [object()], "mock/m", None) is NotImplemented
    # Refused before anything is sent, each with its reason.
    with pytest.raises(TypeError, match="batch item"):
        engine.submit_item(ch, "d", "hello", "mock/m", None)
    with pytest.raises(TypeError, match="needs messages"):
        engine.submit_item(ch, "d", {"model": "mock/m"}, None, None)
    with pytest.raises(ValueError, match="model"):
        engine.submit_item(ch, "d", USER, None, None)
    with pytest.raises(TypeError):
        engine.submit_item(ch, "d", USER)
    assert ch.pending() == 0


def test_submit_chat_positional_fast_path(engine):
    ch = _core.Channel()
    h1 = engine.submit_chat(ch, "a", "mock/m1", USER, None, None)
    h2 = engine.submit_chat(ch, "b", "mock/m1", tuple(USER), {"max_tokens": 3}, {"x-a": "1"})
    h3 = engine.submit_chat(ch, "c", "mock/m1", USER, {}, None)
    done = {ev[0]: ev[1] for ev in collect(ch, 3) if ev[1] is not None}
    assert done == {"a": h1, "b": h2, "c": h3}
    assert not (h1.error or h2.error or h3.error)
    assert h2.usage[1] <= 3  # max_tokens reached the body
    class NotADict(dict):
        pass
    assert engine.submit_chat(ch, "d", "mock/m1", [NotADict(USER[0])], None,
                              None) is NotImplemented
    with pytest.raises(TypeError):
        engine.submit_chat(ch, "d", "mock/m1", "hello", None, None)
    with pytest.raises(ValueError, match="model"):
        engine.submit_chat(ch, "d", None, USER, None, None)
    with pytest.raises(TypeError):
        engine.submit_chat(ch, "d", "mock/m1", USER)
    assert ch.pending() == 0


def test_body_and_embeddings(engine):
    ch = _core.Channel()
    body = json.dumps({"model": "mock/m1", "messages": USER, "max_tokens": 3})
    engine.submit(ch, 0, None, None, body=body)
    assert len(one(ch).text.split()) == 3
    engine.submit(ch, 1, "mock/emb", None, endpoint="embeddings", input=["a b", "c"])
    h = one(ch)
    assert h.error == 0 and len(json.loads(h.body)["data"]) == 2


def test_engine_error_names_the_problem():
    with pytest.raises(_core.EngineError) as ei:
        _core.Engine(prices_file="/nonexistent/prices.json")
    assert ei.value.code == "invalid_input" and "prices" in ei.value.message
    with pytest.raises(_core.EngineError):
        _core.Engine(base_url="ftp://nowhere")


def test_module_functions():
    assert _core.version() == _core.VERSION == "0.1.0"
    assert _core.error_name(_core.LR_ETIMEOUT) == "timeout" and _core.error_name(0) == "ok"
    assert _core.strerror(-15) == "deadline exceeded"
    assert _core.model_provider("anthropic/claude-haiku-4-5") == ("anthropic", "claude-haiku-4-5")
    assert _core.model_provider("meta-llama/Llama-3.1-8B") == ("openai", "meta-llama/Llama-3.1-8B")
    with pytest.raises(TypeError):
        _core.Handle()


def test_fork_child_gets_a_clear_error(engine):
    ch = _core.Channel()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            engine.submit(ch, 0, "mock/m1", USER)
        except RuntimeError as e:
            code = 0 if "created before fork()" in str(e) else 2
        except BaseException:
            code = 3
        try:
            ch.drain()
            code = code or 4
        except RuntimeError:
            pass
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    engine.submit(ch, 0, "mock/m1", USER)  # the parent's client still works
    assert one(ch).error == 0


def test_ten_thousand_submits_at_once(mock):
    e = _core.Engine(base_url=mock.url, api_key="k", max_in_flight=256)
    ch = _core.Channel()
    n = 10_000
    for i in range(n):
        e.submit(ch, i, "mock/bulk", USER, {"max_tokens": 2})
    got = collect(ch, n, timeout=45)
    handles = [h for _, h, _ in got if h is not None]
    assert sorted(h.token for h in handles) == list(range(n))
    assert all(h.error == 0 for h in handles)
    assert e.usage()["succeeded"] == n
    e.close()


def test_wait_is_interrupted_by_ctrl_c():
    import signal
    import threading
    ch = _core.Channel()
    threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT)).start()
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        ch.wait(None)
    assert time.monotonic() - t0 < 2


def test_cycles_through_tokens_and_undrained_channels_are_collected(engine):
    import gc
    import weakref

    class Token:
        pass

    ch = _core.Channel()
    tok = Token()
    tok.handle = engine.submit(ch, tok, "mock/m1", USER)
    tok.channel = ch
    ch.wait(10)
    while ch.pending() == 0 or not tok.handle.done():
        time.sleep(0.01)
    ref = weakref.ref(tok)
    del tok, ch  # the done event stays queued: channel -> handle -> token -> channel
    gc.collect()
    assert ref() is None


def test_threads_with_their_own_channels(engine):
    import threading
    results = {}

    def worker(k):
        ch = _core.Channel()
        for i in range(500):
            engine.submit(ch, (k, i), "mock/m1", USER, {"max_tokens": 2})
        got = collect(ch, 500, timeout=30)
        results[k] = sorted(h.token[1] for _, h, _ in got if h is not None and h.error == 0)

    ts = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert all(results[k] == list(range(500)) for k in range(4))


def test_cancel_mid_stream_keeps_deltas_before_done():
    from conftest import MockServer
    slow = MockServer("--itl-ms", "50", "--tokens", "40")
    try:
        e = _core.Engine(base_url=slow.url, api_key="k", max_retries=0)
        ch = _core.Channel()
        h = e.submit(ch, 0, "mock/m1", USER, stream=True)
        first = []
        while not first:
            ch.wait(5)
            first = ch.drain()
        assert first[0][1] is None  # a delta came, the request goes on
        h.cancel()
        rest = collect(ch, 1)
        assert rest[-1][1] is h and all(ev[1] is None for ev in rest[:-1])
        assert h.error_name == "cancelled" and len(first) + len(rest) - 1 < 40
        e.close()
    finally:
        slow.close()


class Tok:
    """A token that counts its done events (what dispatch hands it)."""
    done = 0

    def _done(self, h):
        Tok.done += 1

    def _delta(self, d):
        pass


class NotAFuture:
    pass


def test_pump_sleeps_for_want_then_lingers(engine):
    """pump(max, future_type, want, linger) hands out nothing before want
    events are queued (the pushes below want do not make the fd readable),
    then all of them in one call; with fewer than want in flight it takes
    what came once linger passed; wait() afterwards signals at the first."""
    ch = _core.Channel()
    Tok.done = 0
    for i in range(10):
        engine.submit(ch, Tok(), "mock/m1", USER)
    assert ch.pump(512, NotAFuture, 10, 30.0) == 10 and Tok.done == 10
    assert ch.pending() == 0 and not readable(ch.fileno())
    # want above what is in flight: linger bounds the sleep.
    for i in range(3):
        engine.submit(ch, Tok(), "mock/m1", USER)
    t0 = time.monotonic()
    assert ch.pump(512, NotAFuture, 4, 0.3) == 3
    assert 0.25 < time.monotonic() - t0 < 5 and Tok.done == 13
    # Events queued below a raised want are not signalled...
    for i in range(2):
        engine.submit(ch, Tok(), "mock/m1", USER)
    end = time.monotonic() + 10
    while ch.pending() < 2:
        assert time.monotonic() < end
        time.sleep(0.01)
    # ...and wait() counts them at once (it sets want back to 1).
    assert ch.wait(0) is True and len(ch.drain()) == 2
    engine.submit(ch, Tok(), "mock/m1", USER)
    assert ch.wait(10) is True and readable(ch.fileno())
    assert len(ch.drain()) == 1 and not readable(ch.fileno())
    assert ch.wait(0) is False


def test_pump_is_interrupted_by_ctrl_c(engine):
    import signal
    import threading
    ch = _core.Channel()
    engine.submit(ch, Tok(), "mock/m1", USER)
    threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        ch.pump(512, NotAFuture, 5, 60.0)  # one of 5 ever comes
    assert time.monotonic() - t0 < 5
    # The event is still queued, and the channel signals as before.
    assert ch.wait(10) is True and len(ch.drain()) == 1


def test_flush_signals_what_is_queued_below_want(engine):
    ch = _core.Channel()
    engine.submit(ch, Tok(), "mock/m1", USER)
    with pytest.raises(TypeError):
        ch.pump(512, NotAFuture, "2", 0.1)
    # A raised want (as a paced batch leaves it) with one event queued.
    ch.pump(512, NotAFuture, 2, 0.05)  # lingers, hands the one out
    engine.submit(ch, Tok(), "mock/m1", USER)
    ch.flush()  # nothing queued yet, or the push signalled: either way harmless
    end = time.monotonic() + 10
    while ch.pending() < 1:
        assert time.monotonic() < end
        time.sleep(0.01)
    ch.flush()
    assert readable(ch.fileno()) and ch.drain()
