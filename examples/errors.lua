-- errors.lua: failures are Lua errors you can catch, with a code and a message.
local ok, err = pcall(ferry.call, "no_such_function")
print("missing function:", ok, err.code)

ok, err = pcall(ferry.call, "sleep", "not a number")
print("bad argument:    ", ok, err.code)

ok, err = pcall(ferry.call, "echo", print)
print("unsendable value:", ok, err.code)

ok, err = pcall(error, "plain Lua errors too")
print("plain error:     ", ok, err)

-- Uncaught, an error ends the script: `ferry run` exits 1 and prints it.
return "all errors handled"
