"""What ferry_client.py and ferry_worker.py share: the messages, values, ids.

The message classes come from proto/ferry.proto through protoc
(`protoc --python_out`), generated on first use when ferry_pb2.py is missing
or older than the .proto file:

  FERRY_PROTO_DIR  the folder holding ferry.proto (default: ../../proto)
  FERRY_PB_DIR     where ferry_pb2.py goes (default: this folder)

Only the standard library, pyzmq and the protobuf runtime are used. The
wire contract is docs/protocol.md.
"""
import importlib
import math
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile

PROTOCOL_VERSION = 1
HERE = os.path.dirname(os.path.abspath(__file__))


def add_key_options(parser):
    """--curve-key and --broker-key, as the C programs have them (FERRY_CURVE_KEY, FERRY_BROKER_KEY)."""
    parser.add_argument("--curve-key", default=os.environ.get("FERRY_CURVE_KEY") or None,
                        help="this process's secret certificate (ferry keygen) (FERRY_CURVE_KEY)")
    parser.add_argument("--broker-key", default=os.environ.get("FERRY_BROKER_KEY") or None,
                        help="the broker's public certificate (FERRY_BROKER_KEY)")


def use_keys(sock, curve_key, broker_key):
    """Makes sock a CURVE client of the broker; call before connect. Both None: no CURVE.

    The files are czmq zcert certificates, which pyzmq's zmq.auth reads."""
    if not curve_key and not broker_key:
        return
    if not curve_key or not broker_key:
        raise SystemExit("--curve-key and --broker-key go together")
    import zmq
    import zmq.auth
    public, secret = zmq.auth.load_certificate(curve_key)
    if secret is None and os.path.exists(curve_key + "_secret"):
        public, secret = zmq.auth.load_certificate(curve_key + "_secret")
    if secret is None:
        raise SystemExit("%s holds no secret key" % curve_key)
    server, _ = zmq.auth.load_certificate(broker_key)
    sock.setsockopt(zmq.CURVE_PUBLICKEY, public)
    sock.setsockopt(zmq.CURVE_SECRETKEY, secret)
    sock.setsockopt(zmq.CURVE_SERVERKEY, server)


def load_messages():
    """Returns the ferry_pb2 module, generating it with protoc when needed."""
    proto_dir = os.environ.get("FERRY_PROTO_DIR") or os.path.join(HERE, "..", "..", "proto")
    out_dir = os.environ.get("FERRY_PB_DIR") or HERE
    proto = os.path.join(proto_dir, "ferry.proto")
    target = os.path.join(out_dir, "ferry_pb2.py")
    stale = not os.path.exists(target) or (
        os.path.exists(proto) and os.path.getmtime(proto) > os.path.getmtime(target))
    if stale:
        protoc = shutil.which("protoc")
        if not protoc:
            sys.exit("ferry: protoc not found (Debian: apt-get install protobuf-compiler)")
        # Generate aside and rename: a second process never reads half a file.
        tmp = tempfile.mkdtemp(dir=out_dir, prefix=".ferry_pb2-")
        try:
            subprocess.run([protoc, "--proto_path=" + proto_dir, "--python_out=" + tmp, proto],
                           check=True)
            os.replace(os.path.join(tmp, "ferry_pb2.py"), target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    if out_dir not in sys.path:
        sys.path.insert(0, out_dir)
    return importlib.import_module("ferry_pb2")


pb = load_messages()


def make_id(prefix):
    """A routing id unique per process start, as Ferry's own: prefix-host-pid-hex."""
    return "%s-%s-%d-%08x" % (prefix, socket.gethostname(), os.getpid(),
                              random.getrandbits(32))


def envelope(**body):
    """An Envelope with the protocol version and one body: envelope(reply=pb.Reply(...))."""
    env = pb.Envelope(version=PROTOCOL_VERSION)
    (name, msg), = body.items()
    getattr(env, name).CopyFrom(msg)
    return env


def decode(frame):
    """The Envelope in frame, or None when it does not decode or has another version."""
    env = pb.Envelope()
    try:
        env.ParseFromString(frame)
    except Exception:  # DecodeError and friends: nothing a peer sends may stop us
        return None
    if env.version != PROTOCOL_VERSION or env.WhichOneof("body") is None:
        return None
    return env


# ---- values: Lua on the wire, Python here ----------------------------------------
#
# nil <-> None, boolean <-> bool, integer <-> int, number <-> float,
# string <-> bytes (Lua strings are byte strings; str is sent as UTF-8),
# table -> list when it has only an array part, else dict (array items under
# the keys 1..n); list/tuple -> array part, dict -> hash part.

INT_MIN, INT_MAX = -2 ** 63, 2 ** 63 - 1


def to_python(v):
    kind = v.WhichOneof("kind")
    if kind is None or kind == "nil":
        return None
    if kind == "table":
        items = [to_python(x) for x in v.table.array]
        if not v.table.hash:
            return items
        out = {i + 1: x for i, x in enumerate(items)}
        for pair in v.table.hash:
            key = to_python(pair.key)
            out[key if not isinstance(key, list) else tuple(key)] = to_python(pair.value)
        return out
    return getattr(v, kind)


def to_value(x, depth=0):
    """A Value for x; ValueError for what Lua has no value for."""
    if depth > 100:
        raise ValueError("value nested too deep")
    v = pb.Value()
    if x is None:
        v.nil = True
    elif isinstance(x, bool):
        v.boolean = x
    elif isinstance(x, int):
        if not INT_MIN <= x <= INT_MAX:
            raise ValueError("integer %d out of Lua's range" % x)
        v.integer = x
    elif isinstance(x, float):
        v.number = x
    elif isinstance(x, (bytes, bytearray)):
        v.string = bytes(x)
    elif isinstance(x, str):
        v.string = x.encode()
    elif isinstance(x, (list, tuple)):
        v.table.SetInParent()
        for item in x:
            v.table.array.add().CopyFrom(to_value(item, depth + 1))
    elif isinstance(x, dict):
        v.table.SetInParent()
        for key, item in x.items():
            if key is None or (isinstance(key, float) and math.isnan(key)):
                raise ValueError("table key cannot be nil or NaN")
            pair = v.table.hash.add()
            pair.key.CopyFrom(to_value(key, depth + 1))
            pair.value.CopyFrom(to_value(item, depth + 1))
    else:
        raise ValueError("no Lua value for %s" % type(x).__name__)
    return v


def to_json_ready(x):
    """x with bytes decoded (invalid UTF-8 replaced) and dict keys as text, for json.dumps."""
    if isinstance(x, bytes):
        return x.decode("utf-8", "replace")
    if isinstance(x, list):
        return [to_json_ready(i) for i in x]
    if isinstance(x, dict):
        return {str(to_json_ready(k)): to_json_ready(i) for k, i in x.items()}
    if isinstance(x, float) and (math.isnan(x) or math.isinf(x)):
        return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")
    return x
