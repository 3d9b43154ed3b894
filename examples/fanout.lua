-- fanout.lua: 50 sleeps of 200 ms, all in flight at once.
-- ferry.all sends every call before waiting for any, so the script takes
-- about one sleep, not fifty; results come back in call order.
local calls = {}
for i = 1, 50 do
  calls[i] = {"sleep", 200}
end
local results = ferry.all(table.unpack(calls))
local done = 0
for _, r in ipairs(results) do
  if r[1] == true then done = done + 1 end
end
print(done .. " sleeps of 200 ms finished")
return done
