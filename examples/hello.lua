-- hello.lua: the smallest Ferry script.
--   ferry run examples/hello.lua Ferry
-- The echo call travels engine -> broker -> worker -> broker -> engine while
-- this script's coroutine waits; its return value is the worker's answer.
local who = ferry.args[1] or "world"
print("hello from a Ferry engine")
return ferry.call("echo", "hello, " .. who)
