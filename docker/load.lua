-- docker/load.lua: the load docker/test.sh keeps running while it scales the
-- workers: n sleeps of ms milliseconds (all in flight at once where the
-- engine has ferry.all, one after the other otherwise), then an echo.
--   ferry run docker/load.lua [n [ms]]      returns n, "load"
local n = math.tointeger(tonumber(ferry.args[1])) or 10
local ms = math.tointeger(tonumber(ferry.args[2])) or 200
local done = 0
if ferry.all then
  local calls = {}
  for i = 1, n do
    calls[i] = {"sleep", ms}
  end
  for _, r in ipairs(ferry.all(table.unpack(calls))) do
    if r[1] == true then done = done + 1 end
  end
else
  for _ = 1, n do
    if ferry.call("sleep", ms) == true then done = done + 1 end
  end
end
return done, ferry.call("echo", "load")
