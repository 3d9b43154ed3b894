"""The value-carrying messages on the wire, coded by hand; the rest through ferry_pb2.

Command and Result (received) and Reply and Submit (sent) carry Lua values.
They are coded here, straight between the wire bytes and Python values,
because:

- Debian's protobuf runtime (the C++ one) refuses a message nested deeper
  than 100 levels, which is tables 33 (hash parts) to 49 (array parts) deep; the protocol allows 64
  (docs/protocol.md, "Values");
- a Command whose arguments do not decode must still be answered
  `bad_message` from its top level (engine_id, call_id), which a whole-message
  parser cannot give;
- it saves building a protobuf tree only to walk it again.

Every other message (Ready, Heartbeat, Goodbye, StatsRequest, Stats) goes
through the generated ferry_pb2. tests/test_codec.py checks this codec
against ferry_pb2 both ways, and ferry_pb2 against proto/ferry.proto.

Values, Lua to Python: nil None, boolean bool, integer int, number float,
string str when it is valid UTF-8 else bytes (strings="bytes": always
bytes), table list when it has only an array part (or nothing), else dict
(the array part under the keys 1..n, the hash part over it: a key in both
takes the hash's value). Python to Lua: None, bool, int (64-bit), float,
str (as UTF-8), bytes / bytearray / memoryview, list / tuple (array part),
dict (hash part).
"""
import math
import struct

from . import ferry_pb2 as pb

PROTOCOL_VERSION = 1
MAX_DEPTH = 64  # tables nested in tables, both ways (docs/protocol.md, "Values")
INT_MIN, INT_MAX = -(2 ** 63), 2 ** 63 - 1

_DOUBLE = struct.Struct("<d")

# Envelope.body field numbers (proto/ferry.proto); tests check them against ferry_pb2.
F_ENV_VERSION, F_ENV_COMMAND, F_ENV_REPLY, F_ENV_SUBMIT, F_ENV_RESULT = 1, 5, 6, 7, 8


class DecodeError(ValueError):
    """The bytes are not the message they should be."""


class EncodeError(ValueError):
    """A Python value has no Lua value (or is nested too deep)."""


# ---- encoding ----------------------------------------------------------------------

def _varint(n):
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _len_field(tag, payload):
    return tag + _varint(len(payload)) + payload


_NIL = b"\x08\x01"


def encode_value(x, depth=0):
    """The serialized Value for x; EncodeError for what Lua has no value for."""
    if x is None:
        return _NIL
    if x is True:
        return b"\x10\x01"
    if x is False:
        return b"\x10\x00"
    if isinstance(x, int):
        if not INT_MIN <= x <= INT_MAX:
            raise EncodeError("integer %d is out of Lua's 64-bit range" % x)
        return b"\x18" + _varint(((x << 1) ^ (x >> 63)) & 0xFFFFFFFFFFFFFFFF)
    if isinstance(x, float):
        return b"\x21" + _DOUBLE.pack(x)
    if isinstance(x, str):
        try:
            return _len_field(b"\x2a", x.encode("utf-8"))
        except UnicodeEncodeError as e:
            raise EncodeError("a str that is not valid Unicode (%s)" % e.reason) from None
    if isinstance(x, (bytes, bytearray, memoryview)):
        return _len_field(b"\x2a", bytes(x))
    if isinstance(x, (list, tuple, dict)):
        if depth >= MAX_DEPTH:
            raise EncodeError("cannot send tables nested deeper than %d" % MAX_DEPTH)
        parts = []
        if isinstance(x, dict):
            for key, item in x.items():
                if key is None or (isinstance(key, float) and math.isnan(key)):
                    raise EncodeError("a table key cannot be nil or NaN")
                pair = (_len_field(b"\x0a", encode_value(key, depth + 1)) +
                        _len_field(b"\x12", encode_value(item, depth + 1)))
                parts.append(_len_field(b"\x12", pair))
        else:
            for item in x:
                parts.append(_len_field(b"\x0a", encode_value(item, depth + 1)))
        return _len_field(b"\x32", b"".join(parts))
    raise EncodeError("no Lua value for a Python %s" % type(x).__name__)


def encode_values(tag, values):
    return b"".join(_len_field(tag, encode_value(v)) for v in values)


def _str(field_tag, s):
    """A proto3 string field: UTF-8 (what cannot be encoded, a lone surrogate, is replaced)."""
    return _len_field(field_tag, s.encode("utf-8", "replace")) if s else b""


def encode_reply(engine_id, call_id, values=(), code=None, message=""):
    """The Envelope{reply} bytes: values, or an error when code is set."""
    body = _len_field(b"\x0a", engine_id) + b"\x10" + _varint(call_id)
    if code:
        body += _len_field(b"\x22", _str(b"\x0a", code) + _str(b"\x12", message))
    else:
        body += encode_values(b"\x1a", values)
    return b"\x08\x01" + _len_field(b"\x32", body)


def encode_submit(request_id, source, args, timeout_ms, name, max_memory=0,
                  max_instructions=0, max_output=0):
    """The Envelope{submit} bytes."""
    body = b"\x08" + _varint(request_id) + _len_field(b"\x12", source)
    body += encode_values(b"\x1a", args)
    if timeout_ms:
        body += b"\x20" + _varint(timeout_ms)
    body += _str(b"\x2a", name)
    for tag, n in ((b"\x38", max_memory), (b"\x40", max_instructions), (b"\x48", max_output)):
        if n:
            body += tag + _varint(n)
    return b"\x08\x01" + _len_field(b"\x3a", body)


def encode_envelope(**body):
    """Any other message through ferry_pb2: encode_envelope(ready=pb.Ready(...))."""
    env = pb.Envelope(version=PROTOCOL_VERSION)
    (name, msg), = body.items()
    getattr(env, name).CopyFrom(msg)
    return env.SerializeToString()


# ---- decoding ----------------------------------------------------------------------

def _read_varint(buf, pos, end):
    result = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise DecodeError("truncated or overlong varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result & 0xFFFFFFFFFFFFFFFF, pos
        shift += 7


def _fields(buf, pos, end):
    """Yields (field number, wire type, value or (start, end)) of one message."""
    while pos < end:
        key, pos = _read_varint(buf, pos, end)
        field, wt = key >> 3, key & 7
        if field == 0:
            raise DecodeError("field number 0")
        if wt == 0:
            v, pos = _read_varint(buf, pos, end)
            yield field, wt, v
        elif wt == 1:
            if pos + 8 > end:
                raise DecodeError("truncated fixed64")
            yield field, wt, (pos, pos + 8)
            pos += 8
        elif wt == 2:
            n, pos = _read_varint(buf, pos, end)
            if n > end - pos:
                raise DecodeError("length past the end")
            yield field, wt, (pos, pos + n)
            pos += n
        elif wt == 5:
            if pos + 4 > end:
                raise DecodeError("truncated fixed32")
            pos += 4
        else:
            raise DecodeError("wire type %d" % wt)


def _want(wt, expected, what):
    if wt != expected:
        raise DecodeError("%s has the wrong wire type" % what)


def _text(buf, span, raw):
    b = bytes(buf[span[0]:span[1]])
    if raw:
        return b
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return b


def _hashable(k):
    if isinstance(k, list):
        return tuple(_hashable(i) for i in k)
    if isinstance(k, dict):
        return tuple(sorted(((_hashable(a), _hashable(b)) for a, b in k.items()), key=repr))
    return k


def decode_value(buf, start, end, raw=False, depth=0):
    """The Python value of the serialized Value buf[start:end]."""
    out = None
    for field, wt, v in _fields(buf, start, end):
        if field == 1:
            _want(wt, 0, "Value.nil")
            out = None
        elif field == 2:
            _want(wt, 0, "Value.boolean")
            out = v != 0
        elif field == 3:
            _want(wt, 0, "Value.integer")
            out = (v >> 1) ^ -(v & 1)
        elif field == 4:
            _want(wt, 1, "Value.number")
            out = _DOUBLE.unpack_from(buf, v[0])[0]
        elif field == 5:
            _want(wt, 2, "Value.string")
            out = _text(buf, v, raw)
        elif field == 6:
            _want(wt, 2, "Value.table")
            if depth >= MAX_DEPTH:
                raise DecodeError("tables nested deeper than %d" % MAX_DEPTH)
            out = _decode_table(buf, v[0], v[1], raw, depth + 1)
    return out


def _decode_table(buf, start, end, raw, depth):
    array, hash_part = [], []
    for field, wt, v in _fields(buf, start, end):
        if field == 1:
            _want(wt, 2, "Table.array")
            array.append(decode_value(buf, v[0], v[1], raw, depth))
        elif field == 2:
            _want(wt, 2, "Table.hash")
            key = value = None
            for f2, wt2, v2 in _fields(buf, v[0], v[1]):
                if f2 in (1, 2):
                    _want(wt2, 2, "Pair")
                    x = decode_value(buf, v2[0], v2[1], raw, depth)
                    if f2 == 1:
                        key = x
                    else:
                        value = x
            if key is None or (isinstance(key, float) and math.isnan(key)):
                raise DecodeError("a table key is nil or NaN")
            hash_part.append((_hashable(key), value))
    if not hash_part:
        return array
    out = {i + 1: x for i, x in enumerate(array)}
    out.update(hash_part)  # the hash wins over the array; of a repeated key, the last
    return out


def decode_values(buf, spans, raw=False):
    return [decode_value(buf, s, e, raw) for s, e in spans]


def peek(frame):
    """(version, body field, (start, end)) of an Envelope; DecodeError when it has no body."""
    version, body, span = 0, None, None
    for field, wt, v in _fields(frame, 0, len(frame)):
        if field == F_ENV_VERSION and wt == 0:
            version = v
        elif 2 <= field <= 11 and wt == 2:
            body, span = field, v  # a oneof: the last one wins
    if body is None:
        raise DecodeError("an envelope without a body")
    return version, body, span


class Command:
    """A Command's fields; args is None when only the top level decoded (see error)."""
    __slots__ = ("engine_id", "call_id", "function", "args", "timeout_ms", "error")


def decode_command(buf, start, end, raw=False):
    """A Command. Its top level must decode (else DecodeError); its arguments may not:
    then args is None and error says why."""
    c = Command()
    c.engine_id, c.call_id, c.function, c.timeout_ms, c.error = b"", 0, b"", 0, None
    spans = []
    for field, wt, v in _fields(buf, start, end):
        if field == 1 and wt == 2:
            c.engine_id = bytes(buf[v[0]:v[1]])
        elif field == 2 and wt == 0:
            c.call_id = v
        elif field == 3 and wt == 2:
            c.function = bytes(buf[v[0]:v[1]])
        elif field == 4 and wt == 2:
            spans.append(v)
        elif field == 5 and wt == 0:
            c.timeout_ms = v & 0xFFFFFFFF
    try:
        c.args = decode_values(buf, spans, raw)
    except (DecodeError, RecursionError) as e:
        c.args, c.error = None, str(e)
    return c


class Result:
    """A script's result: ok, values, output (bytes), error (an Error or None)."""
    __slots__ = ("request_id", "ok", "values", "output", "error")

    def __init__(self, request_id=0, ok=False, values=(), output=b"", error=None):
        self.request_id, self.ok, self.values = request_id, ok, list(values)
        self.output, self.error = output, error

    @property
    def value(self):
        """The first value the script returned (None when it returned none)."""
        return self.values[0] if self.values else None

    def __repr__(self):
        if self.ok:
            return "Result(ok, values=%r, output=%r)" % (self.values, self.output)
        return "Result(failed, error=%r, output=%r)" % (self.error, self.output)


def decode_error(buf, start, end):
    code = message = ""
    for field, wt, v in _fields(buf, start, end):
        if wt == 2 and field in (1, 2):
            s = bytes(buf[v[0]:v[1]]).decode("utf-8", "replace")
            if field == 1:
                code = s
            else:
                message = s
    return code, message


def decode_result(buf, start, end, raw=False):
    """A Result; (code, message) in error. A value that does not decode fails it
    with bad_message, keeping its request_id and output."""
    r = Result()
    spans = []
    for field, wt, v in _fields(buf, start, end):
        if field == 1 and wt == 0:
            r.request_id = v
        elif field == 2 and wt == 0:
            r.ok = v != 0
        elif field == 3 and wt == 2:
            spans.append(v)
        elif field == 4 and wt == 2:
            r.output = bytes(buf[v[0]:v[1]])
        elif field == 5 and wt == 2:
            r.error = decode_error(buf, v[0], v[1])
    try:
        r.values = decode_values(buf, spans, raw)
    except (DecodeError, RecursionError) as e:
        r.ok, r.values, r.error = False, [], ("bad_message", "the result does not decode: %s" % e)
    return r
