"""The package's wire layer against the protocol's own definitions, no processes:

- ferry/ferry_pb2.py is what protoc makes of proto/ferry.proto today (the
  same FileDescriptorProto), so a schema change cannot leave it stale;
- the hand codec of ferry/_wire.py agrees with ferry_pb2 both ways, on the
  field numbers it hard-codes and on values;
- the limits: tables 64 deep, 64-bit integers, function names.
"""
import math
import os
import random
import shutil
import subprocess
import tempfile

import pytest

import ferry
from ferry import _wire
from ferry import ferry_pb2 as pb
from ferry.worker import check_name
from google.protobuf import descriptor_pb2

PROTO = os.path.join(os.path.dirname(__file__), "..", "..", "proto", "ferry.proto")


@pytest.mark.skipif(not shutil.which("protoc") or not os.path.exists(PROTO),
                    reason="needs protoc and the source tree's proto/ferry.proto")
def test_pb2_is_current():
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "ferry.desc")
        subprocess.run(["protoc", "--proto_path", os.path.dirname(PROTO),
                        "--descriptor_set_out", out, PROTO], check=True)
        with open(out, "rb") as f:
            fresh = descriptor_pb2.FileDescriptorSet.FromString(f.read()).file[0]
    for m in fresh.message_type:  # protoc adds json_name here, not in generated code
        for f in m.field:
            f.ClearField("json_name")
    committed = descriptor_pb2.FileDescriptorProto.FromString(pb.DESCRIPTOR.serialized_pb)
    assert committed == fresh, (
        "python/ferry/ferry_pb2.py is stale: regenerate it with\n"
        "  protoc --proto_path=proto --python_out=python/ferry proto/ferry.proto")


def test_field_numbers_match_the_schema():
    env = pb.Envelope.DESCRIPTOR.fields_by_name
    assert env["version"].number == _wire.F_ENV_VERSION
    assert env["command"].number == _wire.F_ENV_COMMAND
    assert env["reply"].number == _wire.F_ENV_REPLY
    assert env["submit"].number == _wire.F_ENV_SUBMIT
    assert env["result"].number == _wire.F_ENV_RESULT
    # Every field of the hand-coded messages, name -> (number, type): a new or
    # renumbered field must be taught to _wire.py (and then here).
    expect = {
        "Value": {"nil": 1, "boolean": 2, "integer": 3, "number": 4, "string": 5, "table": 6},
        "Table": {"array": 1, "hash": 2}, "Pair": {"key": 1, "value": 2},
        "Error": {"code": 1, "message": 2},
        "Command": {"engine_id": 1, "call_id": 2, "function": 3, "args": 4, "timeout_ms": 5},
        "Reply": {"engine_id": 1, "call_id": 2, "values": 3, "error": 4},
        "Submit": {"request_id": 1, "source": 2, "args": 3, "timeout_ms": 4, "name": 5,
                   "script_id": 6, "max_memory": 7, "max_instructions": 8, "max_output": 9},
        "Result": {"request_id": 1, "ok": 2, "values": 3, "output": 4, "error": 5,
                   "script_id": 6},
    }
    for msg, fields in expect.items():
        got = {f.name: f.number for f in getattr(pb, msg).DESCRIPTOR.fields}
        assert got == fields, msg


def to_pb(x):
    """The ferry_pb2 Value for x, built the slow obvious way."""
    v = pb.Value()
    if x is None:
        v.nil = True
    elif isinstance(x, bool):
        v.boolean = x
    elif isinstance(x, int):
        v.integer = x
    elif isinstance(x, float):
        v.number = x
    elif isinstance(x, (str, bytes)):
        v.string = x.encode() if isinstance(x, str) else x
    elif isinstance(x, list):
        v.table.SetInParent()
        for i in x:
            v.table.array.add().CopyFrom(to_pb(i))
    else:
        v.table.SetInParent()
        for k, i in x.items():
            p = v.table.hash.add()
            p.key.CopyFrom(to_pb(k))
            p.value.CopyFrom(to_pb(i))
    return v


def random_value(rng, depth=0):
    kind = rng.randrange(9 if depth < 4 else 7)
    if kind == 0:
        return None
    if kind == 1:
        return rng.random() < 0.5
    if kind == 2:
        return rng.choice([0, 1, -1, 2 ** 63 - 1, -2 ** 63, rng.randrange(-10 ** 12, 10 ** 12)])
    if kind == 3:
        return rng.choice([0.0, -0.5, 3.0, 1e300, float("inf"), -float("inf"), rng.random()])
    if kind == 4:
        return rng.choice(["", "café", "a\0b", "x" * 300])
    if kind == 5:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(20))) + b"\xff"
    if kind == 6:
        return rng.choice(["k", 1, 2.5, True])
    if kind == 7:
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(5))]
    return {rng.choice(["a", "b", 7, 2.5, False]): random_value(rng, depth + 1)
            for _ in range(rng.randrange(1, 4))}


def test_values_agree_with_pb2_both_ways():
    rng = random.Random(16)
    for _ in range(2000):
        x = random_value(rng)
        ours = _wire.encode_value(x)
        theirs = to_pb(x)
        assert pb.Value.FromString(ours) == theirs, x
        back = _wire.decode_value(theirs.SerializeToString(), 0, theirs.ByteSize())
        assert back == x or (isinstance(x, float) and math.isnan(x))


def test_lua_to_python_rules():
    def rt(v):
        b = v.SerializeToString()
        return _wire.decode_value(b, 0, len(b))
    assert rt(pb.Value()) is None                       # no kind set is nil
    t = pb.Value()
    t.table.SetInParent()
    assert rt(t) == []                                  # an empty table
    t.table.array.add().integer = 10
    t.table.array.add().nil = True                      # a hole
    p = t.table.hash.add()
    p.key.integer, p.value.string = 1, b"hash wins"
    assert rt(t) == {1: "hash wins", 2: None}
    s = pb.Value(string=b"\xff\xfe")
    assert rt(s) == b"\xff\xfe"                         # not UTF-8: bytes
    b = pb.Value(string=b"ok").SerializeToString()
    assert _wire.decode_value(b, 0, len(b), raw=True) == b"ok"


def deep(n):
    x = 1
    for _ in range(n):
        x = [x]
    return x


def test_depth_limit_both_ways():
    ok = _wire.encode_value(deep(64))
    assert _wire.decode_value(ok, 0, len(ok)) == deep(64)
    with pytest.raises(_wire.EncodeError):
        _wire.encode_value(deep(65))
    too_deep = _wire._len_field(b"\x32", _wire._len_field(b"\x0a", ok))
    with pytest.raises(_wire.DecodeError):
        _wire.decode_value(too_deep, 0, len(too_deep))


def test_unsendable_values():
    for bad in (object(), 2 ** 63, {None: 1}, {float("nan"): 1}, "\ud800"):
        with pytest.raises(_wire.EncodeError):
            _wire.encode_value(bad)


def test_messages_agree_with_pb2():
    reply = pb.Envelope.FromString(_wire.encode_reply(b"eng", 2 ** 64 - 1, [1, "x"]))
    assert reply.version == 1 and reply.reply.engine_id == b"eng"
    assert reply.reply.call_id == 2 ** 64 - 1 and len(reply.reply.values) == 2
    err = pb.Envelope.FromString(_wire.encode_reply(b"e", 3, code="timeout", message="late"))
    assert err.reply.error.code == "timeout" and err.reply.error.message == "late"
    assert not err.reply.values
    sub = pb.Envelope.FromString(_wire.encode_submit(7, b"return 1", [None], 1500, "n.lua",
                                                     1, 2, 3))
    s = sub.submit
    assert (s.request_id, s.source, s.timeout_ms, s.name) == (7, b"return 1", 1500, "n.lua")
    assert (s.max_memory, s.max_instructions, s.max_output) == (1, 2, 3)
    assert s.args[0].WhichOneof("kind") == "nil"

    env = pb.Envelope(version=1)
    c = env.command
    c.engine_id, c.call_id, c.function, c.timeout_ms = b"e1", 99, "py.x", 250
    c.args.add().integer = -5
    frame = env.SerializeToString()
    version, body, (start, end) = _wire.peek(frame)
    assert (version, body) == (1, _wire.F_ENV_COMMAND)
    cmd = _wire.decode_command(frame, start, end)
    assert (cmd.engine_id, cmd.call_id, cmd.function, cmd.timeout_ms, cmd.args) == (
        b"e1", 99, b"py.x", 250, [-5])

    env = pb.Envelope(version=1)
    r = env.result
    r.request_id, r.ok, r.output = 5, False, b"printed"
    r.error.code, r.error.message = "script_error", "boom"
    frame = env.SerializeToString()
    _, body, (start, end) = _wire.peek(frame)
    res = _wire.decode_result(frame, start, end)
    assert (res.request_id, res.ok, res.output, res.error) == (5, False, b"printed",
                                                               ("script_error", "boom"))


def test_command_with_bad_args_keeps_its_top_level():
    # A Command whose top level reads but whose argument does not: answerable.
    body = b"\x0a\x02e1" + b"\x10\x07" + b"\x1a\x02py" + b"\x22\x03\x32\x01\xff"
    frame = b"\x08\x01" + b"\x2a" + bytes([len(body)]) + body
    _, _, (start, end) = _wire.peek(frame)
    cmd = _wire.decode_command(frame, start, end)
    assert (cmd.engine_id, cmd.call_id, cmd.function, cmd.args) == (b"e1", 7, b"py", None)
    assert cmd.error


def test_name_rule():
    for good in ("http.get", "café", "x" * 255):
        check_name(good)
    for bad in ("", "x" * 256, "a\0b", "\ud800", "é" * 128):
        with pytest.raises(ValueError):
            check_name(bad)
    w = ferry.Worker("ipc:///nonexistent")
    with pytest.raises(ValueError):
        w.function("")(lambda: None)


def test_keys_roundtrip(tmp_path):
    path = str(tmp_path / "k")
    ferry.generate_keys(path)
    public, secret = ferry.load_certificate(path + "_secret")
    assert len(public) == 40 and len(secret) == 40
    assert ferry.load_certificate(path) == (public, None)
    assert os.stat(path + "_secret").st_mode & 0o777 == 0o600
    with pytest.raises(ferry.FerryError):
        ferry.Client("ipc:///nonexistent", curve_key=path + "_secret")  # without broker_key
    with pytest.raises(ferry.FerryError):
        ferry.load_certificate(str(tmp_path / "missing"))


def test_worker_survives_any_frame():
    """Whatever arrives, the worker's frame handler neither raises nor answers what it
    cannot route; a Command it can route gets exactly one answer."""
    w = ferry.Worker("ipc:///nonexistent")
    w.function("t.f")(lambda *a: a)
    w._inflight, answers, started = {}, [], []
    w._reply = lambda call, values=(), code=None, message="": answers.append((call.call_id, code))
    w._start = lambda fn, call, args: started.append(call.call_id)
    env = pb.Envelope(version=1)
    c = env.command
    c.engine_id, c.call_id, c.function, c.timeout_ms = b"e", 1, "t.f", 100
    c.args.add().table.hash.add().key.string = b"k"
    good = env.SerializeToString()
    rng = random.Random(7)
    frames = [b"", b"\x00", b"\xff" * 20, good[:-1], good + b"\x60\x01"]
    for _ in range(3000):
        b = bytearray(good)
        for _ in range(rng.randrange(1, 4)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        frames.append(bytes(b))
    for f in frames:
        before = len(answers) + len(started)
        w._on_frame(f)
        assert len(answers) + len(started) - before <= 1
    w._on_frame(good)
    assert started[-1] == 1
    # A Command whose argument does not decode is answered bad_message, not dropped.
    bad = bytearray(good)
    bad[bad.index(b"\x2a\x01k") + 1] = 0x7F  # the key string now runs past its Value
    answers.clear()
    w._on_frame(bytes(bad))
    assert answers and answers[-1][1] in ("bad_message",)
