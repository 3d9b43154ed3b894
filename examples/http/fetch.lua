-- fetch.lua: http.get and http.request of ferry-worker.
--   ferry run examples/http/fetch.lua https://example.org/
-- Needs a URL the worker can reach (`make demo` runs only examples/*.lua,
-- which need no network, so this one lives in its own folder). The worker
-- refuses internal addresses, localhost included: for a server on this
-- machine (python3 -m http.server 8000) start it with
--   ferry-worker --http-allow 127.0.0.1/32,::1/128
local url = ferry.args[1] or "http://localhost:8000/"

local r = ferry.call("http.get", url, {timeout_ms = 5000})
print("GET", url, "->", r.status, r.headers["content-type"], #r.body .. " bytes")

-- Several requests at once: one worker, one event loop, no thread each.
local calls = {}
for i = 1, 5 do calls[i] = {"http.get", url} end
local statuses = {}
for i, res in ipairs(ferry.all(table.unpack(calls))) do statuses[i] = res[1].status end
print("5 at once:", table.concat(statuses, " "))

-- Any method, headers and a binary-safe body; failures are errors to catch.
local ok, e = pcall(ferry.call, "http.request", {
  method = "POST", url = url, headers = {["Content-Type"] = "application/json"},
  body = '{"hello": "ferry"}', timeout_ms = 5000, max_redirects = 0,
})
print("POST:", ok and e.status or (e.code .. ": " .. e.message))
return r.status
