"""A Python client runs scripts that call a Python worker: values both ways, plain and
asyncio functions, errors, deadlines, many scripts in flight."""
import threading

import pytest

import ferry

ECHO = "return ferry.call(ferry.args[1], table.unpack(ferry.args, 2, ferry.args.n))"


@pytest.fixture
def client(stack):
    stack.broker("--unserved-wait", "300")
    stack.engine()
    stack.pyworker()
    return stack.wait_ready(1, 1)


VALUES = [None, True, False, 0, -7, 2 ** 63 - 1, 3.0, -0.25, float("inf"), "", "café",
          b"\x00\xff binary", [1, 2, [3, [4]]], {"a": 1, "b": {"c": [True, None, 2]}},
          {1: "one", 2: "two", "x": "ex"}]


@pytest.mark.parametrize("function", ["t.echo", "t.aecho"])
def test_values_cross_both_ways(client, function):
    script = "return ferry.call(...)"
    r = client.run(script, function, *VALUES, timeout=10)
    assert r.ok
    assert r.values == VALUES
    assert isinstance(r.values[6], float) and isinstance(r.values[4], int)  # 3.0 stays a float


def test_tables_64_deep(client):
    # Deeper than Debian's protobuf runtime decodes (see ferry/_wire.py), as deep as the
    # engine sends: 64 tables, in hash parts and in array parts.
    for wrap in (lambda x: {"k": x}, lambda x: [x]):
        x = "leaf"
        for _ in range(64):
            x = wrap(x)
        r = client.run("return ferry.call('t.aecho', ...)", x, timeout=10)
        assert r.value == x
    with pytest.raises(ferry.FerryError) as e:  # 65: refused before it is sent
        client.submit("return 1", [x])
    assert e.value.code == "usage" and "deeper than 64" in e.value.message


def test_lua_sees_python_types(client):
    r = client.run("""
        local i, f, s, t = ferry.call('t.echo', 3, 3.0, 'x', {1, 2})
        return math.type(i), math.type(f), type(s), #t, ferry.call('t.add', 40, 2)
    """, timeout=10)
    assert r.values == ["integer", "float", "string", 2, 42]


def test_errors(client):
    r = client.run("""
        local out = {}
        for _, c in ipairs({{'t.fail', 'my_code', 'it broke'}, {'t.boom'}, {'t.add', 1},
                            {'t.unsendable'}, {'t.nobody'}, {'t.surrogate'}}) do
            local ok, e = pcall(ferry.call, table.unpack(c))
            out[#out + 1] = e.code .. ': ' .. e.message
        end
        return out
    """, timeout=10)
    out = r.value
    assert out[0] == "my_code: it broke"
    assert out[1].startswith("call_error: t.boom: ValueError: boom")
    assert out[2].startswith("bad_argument: bad arguments to 't.add'")
    assert out[3].startswith("call_error: t.unsendable: cannot send the result")
    assert out[4].startswith("no_worker")
    assert out[5] == "odd?: a message with a lone surrogate ?"  # answered, not lost


def test_script_failure_raises(client):
    with pytest.raises(ferry.ScriptError) as e:
        client.run("print('before'); error({code = 'my_failure', message = 'no'})", timeout=5)
    assert e.value.code == "my_failure"
    assert e.value.output == b"before\n"
    with pytest.raises(ferry.ScriptError) as e:
        client.run("this is not lua", timeout=5)
    assert e.value.code == "syntax_error"


def test_current_call_knows_the_deadline(client):
    r = client.run("return ferry.call('t.deadline')", timeout=4)
    name, timeout_ms, has_deadline = r.values
    assert name == "t.deadline" and 0 < timeout_ms <= 4000 and has_deadline


def test_worker_answers_timeout_and_frees_its_credit(stack):
    stack.broker()
    stack.engine()
    stack.pyworker("--credit", "1")
    c = stack.wait_ready(1, 1)
    # The call's deadline is the script's: the worker answers timeout at it, so its one
    # credit is free again at once (else the broker would hold it 5 s past the deadline).
    with pytest.raises(ferry.ScriptError) as e:
        c.run("return ferry.call('t.hang', 'h')", timeout=0.5)
    assert e.value.code == "timeout"
    r = c.run("return ferry.call('t.echo', 'next')", timeout=2)
    assert r.value == "next"
    s = c.stats()
    assert [w.failed for w in s.worker_list] == [1]  # the worker's own timeout Reply


def test_many_scripts_in_flight(client):
    script = "return ferry.call(ferry.args[1], ferry.args[2], ferry.args[3])"
    pending = {}
    for i in range(200):
        fn = ("t.sleep", "t.ssleep")[i % 2]
        pending[client.submit(script, fn, (200 - i) % 50, i, timeout=20)] = i
    order = []
    for p in client.results(pending, timeout=30):
        assert p.result().value == pending[p]
        order.append(pending[p])
    assert sorted(order) == list(range(200))
    assert order != list(range(200))  # completion order, not submission order
    # wait() hands out results one by one too.
    a = client.submit(script, "t.sleep", 100, "slow", timeout=5)
    b = client.submit(script, "t.sleep", 0, "fast", timeout=5)
    first = client.wait(timeout=5)
    assert first is b and first.result().value == "fast"
    assert client.wait(timeout=5) is a
    assert client.wait(timeout=0.01) is None
    for _ in range(3):
        client.run("return 1", timeout=5)
    assert not client._done and not client._pending  # result() handed them out: nothing kept


def test_submit_over_max_msg_is_refused_before_sending(stack):
    c = ferry.Client(stack.clients, max_msg=1000)
    with pytest.raises(ferry.FerryError) as e:
        c.submit("return 1", "x" * 2000)
    assert e.value.code == "limit"
    c.close()


def test_no_broker_is_unreachable(stack):
    c = ferry.Client(stack.clients, connect_timeout=0.3)
    with pytest.raises(ferry.FerryError) as e:
        c.run("return 1", timeout=1)
    assert e.value.code == "unreachable"
    c.close()


def test_worker_in_a_thread_and_stop(stack):
    stack.broker()
    stack.engine()
    w = ferry.Worker(stack.workers, handle_signals=False, heartbeat_ms=200, strings="bytes",
                     max_msg=4096)

    @w.function("in.big")
    def big(n):
        return b"x" * n

    @w.function("in.proc")
    def where(x):
        return threading.current_thread().name, x, type(x).__name__

    t = threading.Thread(target=w.run)
    t.start()
    try:
        c = stack.wait_ready(1, 1, function="in.proc")
        name, x, kind = c.run("return ferry.call('in.proc', 'raw')", timeout=5).values
        assert name.startswith("ferry-call-") and x == "raw" and kind == "bytes"
        assert c.run("return ferry.call('in.proc', 'raw')", timeout=5).values[1] == "raw"
        assert len(c.run("return ferry.call('in.big', 4000)", timeout=5).value) == 4000
        with pytest.raises(ferry.ScriptError) as e:  # a Reply over max_msg: a call_error
            c.run("return ferry.call('in.big', 5000)", timeout=5)
        assert e.value.code == "call_error"
        assert "over the 4096-byte message limit" in e.value.message
        raw = stack.client(strings="bytes")
        assert raw.run("return 'x', {'y'}", timeout=5).values == [b"x", [b"y"]]
    finally:
        w.stop()
        t.join(10)
    assert not t.is_alive()
    assert w.stats["completed"] == 3 and w.stats["failed"] == 1
