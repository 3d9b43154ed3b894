"""A keyed stack (CURVE, keys from `ferry keygen`): the Python client and worker with
their own keys, and the clear refusal of a client whose key the broker does not list."""
import os
import time

import pytest

import ferry
from conftest import wait_for


def test_keyed_stack(stack):
    stack.use_keys()
    stack.broker()
    stack.engine()
    stack.pyworker()
    c = stack.wait_ready(1, 1)
    assert c.run("return ferry.call('t.aecho', ...)", "sealed", timeout=5).value == "sealed"
    # The public half given as --curve-key finds its _secret beside it, as in C.
    c2 = stack.client(curve_key=stack.keys["client"], broker_key=stack.keys["broker"])
    assert c2.run("return 1", timeout=5).value == 1


def test_unlisted_client_is_not_authorized(stack):
    stack.use_keys()
    stranger = stack.keygen("stranger")
    stack.broker()
    c = ferry.Client(stack.clients, curve_key=stranger + "_secret",
                     broker_key=stack.keys["broker"], connect_timeout=5)
    t0 = time.monotonic()
    with pytest.raises(ferry.FerryError) as e:
        c.run("return 1", timeout=10)
    assert e.value.code == "not_authorized"
    assert "not authorized by the broker at " + stack.clients in str(e.value)
    assert time.monotonic() - t0 < 4  # the handshake said so: not the connect timeout
    with pytest.raises(ferry.FerryError) as e:
        c.stats(timeout=2)
    assert e.value.code == "not_authorized"
    c.close()


def test_keyless_client_of_keyed_broker_is_refused(stack):
    stack.use_keys()
    stack.broker()
    c = ferry.Client(stack.clients, connect_timeout=0.5)
    with pytest.raises(ferry.FerryError) as e:
        c.run("return 1", timeout=2)
    assert e.value.code in ("unreachable", "not_authorized")
    c.close()


def test_unlisted_worker_is_never_registered(stack):
    stack.use_keys()
    os.remove(os.path.join(stack.dir, "allow-workers", "pyworker"))  # before the broker reads it
    stack.broker()
    stack.engine()
    w = stack.pyworker()
    stack.cworker()
    c = stack.wait_ready(1, 1)
    wait_for(lambda: stack.log_has(w, "broker_refused"), 10, "the Python worker refused")
    assert c.stats().workers == 1  # the C worker only
    with pytest.raises(ferry.ScriptError) as e:
        c.run("return ferry.call('t.echo', 1)", timeout=3)
    assert e.value.code == "no_worker"
