"""Python workers and clients when processes die: a worker killed mid-call, a worker
draining on SIGTERM, a broker that restarts under a client and a worker."""
import signal

import pytest

import ferry
from conftest import wait_for

CALL = "return ferry.call(ferry.args[1], ferry.args[2])"


def test_worker_killed_mid_call(stack):
    stack.broker()
    stack.engine()
    a = stack.pyworker("--label", "A", "--hang")
    c = stack.wait_ready(1, 1)
    lost = c.submit(CALL, "t.hang", "lost", timeout=20)            # not idempotent
    retried = c.submit(CALL, "t.maybe_hang", "retried", timeout=20)  # idempotent
    wait_for(lambda: stack.started("lost") and stack.started("retried"), 10,
             "both calls running at worker A")
    stack.pyworker("--label", "B")
    stack.wait_ready(1, 2)
    a.kill()  # SIGKILL: no Goodbye, no Reply
    with pytest.raises(ferry.ScriptError) as e:
        lost.result(timeout=10)
    assert e.value.code == "worker_lost"
    assert retried.result(timeout=10).value == "served by B"
    s = c.stats()
    assert s.workers_lost == 1 and s.calls_retried == 1


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_drains(stack, sig):
    stack.broker("--unserved-wait", "300")
    stack.engine()
    w = stack.pyworker("--label", "D")
    c = stack.wait_ready(1, 1)
    slow = c.submit("return ferry.call('t.slow', 'slow', 2000)", timeout=10)
    wait_for(lambda: stack.started("slow"), 10, "the slow call running")
    w.send_signal(sig)
    # Goodbye: the broker sends the worker nothing new while its call finishes.
    wait_for(lambda: any(x.leaving for x in c.stats().worker_list), 5, "the worker leaving")
    with pytest.raises(ferry.ScriptError) as e:
        c.run(CALL, "t.echo", "anyone?", timeout=5)
    assert e.value.code == "no_worker"
    assert not slow.done()
    assert slow.result(timeout=10).value == "slow done by D"
    assert stack.stop(w, sig=0, timeout=10) == 0  # exits 0 by itself once drained


def test_drain_timeout_bounds_the_wait(stack):
    stack.broker()
    stack.engine()
    w = stack.pyworker("--drain-timeout", "0.5")
    c = stack.wait_ready(1, 1)
    stuck = c.submit(CALL, "t.hang", "stuck", timeout=20)
    wait_for(lambda: stack.started("stuck"), 10, "the call running")
    w.send_signal(signal.SIGTERM)
    assert stack.stop(w, sig=0, timeout=5) == 0
    with pytest.raises(ferry.ScriptError) as e:
        stuck.result(timeout=10)
    assert e.value.code == "worker_lost"  # what is left at the drain timeout is lost


def test_broker_restart(stack):
    broker = stack.broker()
    stack.engine()
    stack.pyworker("--drain-timeout", "1")  # the call the broker took along may stay
    c = stack.wait_ready(1, 1)
    assert c.run(CALL, "t.echo", "before", timeout=5).value == "before"
    pending = c.submit("return ferry.call('t.sleep', 30000)", timeout=20)
    wait_for(lambda: c.stats().in_flight == 1, 5, "the call at the worker")
    assert stack.stop(broker, signal.SIGKILL) == -signal.SIGKILL
    # The connection dropped: the pending result is lost, and the wait says so at once
    # (far before its 20 s deadline plus grace).
    with pytest.raises(ferry.FerryError) as e:
        pending.result(timeout=5)
    assert e.value.code == "broker_lost"
    stack.broker()
    # The same client, engine and Python worker go on with the new broker.
    stack.wait_ready(1, 1, function="t.echo")
    assert c.run(CALL, "t.echo", "after", timeout=5).value == "after"


def test_result_that_never_comes_times_out(stack):
    # A broker that takes the Submit but has no engine answers no_engine... unless it is
    # stopped (SIGSTOP): then nothing answers and the client's own timeout ends the wait.
    broker = stack.broker()
    c = stack.wait_ready(0, 0)
    c.grace = 0.2
    broker.send_signal(signal.SIGSTOP)
    try:
        p = c.submit("return 1", timeout=0.3)
        with pytest.raises(ferry.FerryError) as e:
            p.result()
        assert e.value.code == "timeout"
    finally:
        broker.send_signal(signal.SIGCONT)


def test_worker_registers_again_after_broker_silence(stack):
    # A broker stopped past liveness (SIGSTOP) keeps the connection but says nothing;
    # resumed, it gives every peer up. The Python worker noticed the silence and comes
    # back under a new routing id with a fresh Ready.
    broker = stack.broker()
    stack.engine()
    w = stack.pyworker()
    c = stack.wait_ready(1, 1)
    first = [x.id for x in c.stats().worker_list]
    broker.send_signal(signal.SIGSTOP)
    try:
        wait_for(lambda: stack.log_has(w, "broker_silent"), 10, "the worker noticing")
    finally:
        broker.send_signal(signal.SIGCONT)
    wait_for(lambda: [x.id for x in c.stats().worker_list if not x.leaving] not in ([], first),
             10, "the worker registered under a new id")
    assert c.run(CALL, "t.echo", "back", timeout=5).value == "back"


def test_new_broker_counts_calls_still_running(stack):
    # Ready.running: a call the worker still runs after a broker restart holds its one
    # credit at the new broker, which sends the next call only once the stray Reply of
    # the old one returned it (without it the worker would refuse it: overloaded).
    broker = stack.broker()
    stack.engine()
    w = stack.pyworker("--credit", "1", "--drain-timeout", "1")
    c = stack.wait_ready(1, 1)
    old = c.submit("return ferry.call('t.sleep', 1500, 'old')", timeout=10)
    wait_for(lambda: c.stats().in_flight == 1, 5, "the call at the worker")
    broker.kill()
    broker.wait(5)
    with pytest.raises(ferry.FerryError):
        old.result(timeout=5)
    stack.broker()
    stack.wait_ready(1, 1, function="t.echo")
    assert stack.log_has(w, "running=1")
    assert c.run(CALL, "t.echo", "new", timeout=5).value == "new"
