"""ferry.AsyncClient on a real stack: scripts in flight from asyncio, a broker that goes
away, a refused key."""
import asyncio
import signal

import pytest

import ferry
from conftest import wait_for

CALL = "return ferry.call(ferry.args[1], ferry.args[2], ferry.args[3])"


def test_async_client(stack):
    stack.broker()
    stack.engine()
    stack.pyworker()
    stack.wait_ready(1, 1)

    async def main():
        async with ferry.AsyncClient(stack.clients) as c:
            r = await c.run(CALL, "t.aecho", "hello", [1, 2], timeout=5)
            assert r.values == ["hello", [1, 2]]
            results = await asyncio.gather(*(c.run(CALL, "t.sleep", (100 - i) % 30, i,
                                                   timeout=20) for i in range(100)))
            assert [x.value for x in results] == list(range(100))
            with pytest.raises(ferry.ScriptError) as e:
                await c.run("error({code = 'mine', message = 'm'})", timeout=5)
            assert e.value.code == "mine"
            assert (await c.stats()).engines == 1
    asyncio.run(main())


def test_async_client_broker_lost(stack):
    broker = stack.broker()
    stack.engine()
    stack.pyworker("--drain-timeout", "1")
    c = stack.wait_ready(1, 1)

    async def main():
        async with ferry.AsyncClient(stack.clients) as ac:
            pending = await ac.submit("return ferry.call('t.sleep', 30000)", timeout=20)
            await asyncio.get_running_loop().run_in_executor(
                None, lambda: wait_for(lambda: c.stats().in_flight == 1, 5, "the call"))
            broker.kill()
            with pytest.raises(ferry.FerryError) as e:
                await asyncio.wait_for(pending, 5)
            assert e.value.code == "broker_lost"
    asyncio.run(main())
    assert broker.wait(5) == -signal.SIGKILL


def test_async_client_not_authorized(stack):
    stack.use_keys()
    stranger = stack.keygen("stranger")
    stack.broker()

    async def main():
        async with ferry.AsyncClient(stack.clients, stranger + "_secret", stack.keys["broker"],
                                     connect_timeout=5) as c:
            with pytest.raises(ferry.FerryError) as e:
                await asyncio.wait_for(c.run("return 1", timeout=5), 4)
            assert e.value.code == "not_authorized"
    asyncio.run(main())


def test_async_client_unreachable(stack):
    async def main():
        async with ferry.AsyncClient(stack.clients, connect_timeout=0.3) as c:
            with pytest.raises(ferry.FerryError) as e:
                await c.run("return 1", timeout=1)
            assert e.value.code == "unreachable"
    asyncio.run(main())
