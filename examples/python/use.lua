-- use.lua: a script for the Python worker (examples/python/ferry_worker.py, on the ferry package).
-- Needs that worker next to the broker:
--   python3 examples/python/ferry_worker.py &
--   python3 examples/python/ferry_client.py examples/python/use.lua Ferry
-- Functions served from Python are called like any other, by name.
local who = ferry.args[1] or "python"
print(ferry.call("py.upper", "hello, " .. who))
print(ferry.call("py.add", 40, 2), ferry.call("py.add", 0.5, 2))

-- py.after answers later, from the worker's timer heap: all three are in
-- flight together, and the results come back in call order.
local r = ferry.all({"py.after", 200, "late"}, {"py.after", 100, "early"}, {"py.upper", "now"})
print(r[1][1], r[2][1], r[3][1])

local ok, e = pcall(ferry.call, "py.add", "x", 1)
print("py.add('x', 1):", ok, e.code)
return ferry.call("py.add", 1, 2)
