-- use.lua: a script for the example worker (examples/custom-worker).
-- Needs ferry-example-worker next to the broker, not only ferry-worker:
--   build/bin/ferry-example-worker &
--   ferry run examples/custom-worker/use.lua Ferry
-- Its functions are called like any other: by name, through the broker.
local who = ferry.args[1] or "world"

ferry.call("kv.set", "greeting", {text = "hello, " .. who, n = 1})
local g = ferry.call("kv.get", "greeting")
print("kv.get greeting:", g.text, math.type(g.n))

-- kv.wait parks at the worker until another call sets the key: both go out
-- at once with ferry.all, and the wait comes back with the value.
local r = ferry.all({"kv.wait", "answer", 5000}, {"kv.set", "answer", 42})
print("kv.wait answer:", r[1][1])

-- A key with a time to live; the nil-after-timeout of kv.wait is the delay.
ferry.call("kv.set", "short", "lived", 50)
print("kv.get short:", ferry.call("kv.get", "short"))
ferry.call("kv.wait", "never-set", 100)
print("kv.get short after 100 ms:", ferry.call("kv.get", "short"))

-- Errors of a custom function are Ferry errors like any other.
local ok, e = pcall(ferry.call, "kv.get", 42)
print("kv.get 42:", ok, e.code)

return ferry.call("kv.keys")
