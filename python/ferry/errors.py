"""The exceptions of the package; every one carries a Ferry error code.

docs/protocol.md, "Error codes", lists the codes on the wire; the client
adds the C client library's own: `unreachable` (no broker within the
connect timeout), `usage` (a bad argument), and raises `broker_lost`,
`timeout`, `not_authorized` and `limit` itself as the C client does.
"""


class FerryError(Exception):
    """A Ferry failure: .code (a short snake_case word) and .message."""

    def __init__(self, code, message=""):
        super().__init__("%s: %s" % (code, message) if message else code)
        self.code = code
        self.message = message


class ScriptError(FerryError):
    """The script ended without success: .code, .message, and .result (its output)."""

    def __init__(self, result):
        code, message = result.error or ("script_error", "")
        super().__init__(code or "script_error", message)
        self.result = result

    @property
    def output(self):
        return self.result.output


class CallError(FerryError):
    """Raised by a worker function: its call fails with this code and message.

    Codes are short snake_case words: bad_argument, call_error, timeout, or
    one of the function's own; scripts see them as e.code."""

    def __init__(self, code, message=""):
        super().__init__(code or "call_error", message)
