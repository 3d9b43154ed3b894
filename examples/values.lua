-- values.lua: every value type crosses to a worker and back unchanged.
-- Integers stay integers, floats stay floats, strings may hold zero bytes.
local sent = {
  integer = 42,
  float = 42.0,
  maxint = math.maxinteger,
  tiny = 1e-300,
  inf = math.huge,
  binary = "zero\0byte",
  yes = true,
  no = false,
  nested = {1, 2.5, {deep = {"x"}}, name = "n"},
}
local back = ferry.call("echo", sent)

local keys = {}
for k in pairs(sent) do keys[#keys + 1] = k end
table.sort(keys)
for _, k in ipairs(keys) do
  local v, w = sent[k], back[k]
  local same = v == w
  if type(v) == "table" then
    same = w[1] == 1 and math.type(w[2]) == "float" and w[3].deep[1] == "x" and w.name == "n"
  end
  print(string.format("%-8s %-8s %s", k, math.type(w) or type(w), same and "same" or "CHANGED"))
end
local nan = ferry.call("echo", 0 / 0)
print("nan      float    " .. (nan ~= nan and "same" or "CHANGED"))
return #back.binary, math.type(back.integer), math.type(back.float)
