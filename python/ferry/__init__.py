"""ferry: a client and a worker for Ferry, from Python.

    import ferry

    with ferry.Client("tcp://localhost:5558") as c:          # run scripts
        print(c.run("return ferry.call('py.upper', ...)", "hi").value)

    worker = ferry.Worker("tcp://localhost:5557")           # serve functions
    @worker.function("py.upper", idempotent=True)
    def upper(s):
        return s.upper()
    worker.run()

The wire protocol is docs/protocol.md with proto/ferry.proto; this package
needs pyzmq and the protobuf runtime only (Debian: python3-zmq,
python3-protobuf). See python/README.md.
"""
from ._wire import PROTOCOL_VERSION, Result
from .aio import AsyncClient
from .client import GRACE_S, Client, Pending
from .errors import CallError, FerryError, ScriptError
from .keys import generate as generate_keys, load_certificate
from .worker import Call, Worker, current_call

__version__ = "0.1.0"

__all__ = ["Client", "AsyncClient", "Pending", "Result", "Worker", "Call", "current_call",
           "FerryError", "ScriptError", "CallError", "load_certificate", "generate_keys",
           "GRACE_S", "PROTOCOL_VERSION", "__version__"]
