-- GET /refresh with a different AuthID on every request, read from a file
-- (one per line); each thread takes every n-th line. Arguments after `--`:
--   FILE NTHREADS [stop]
-- With `stop`, a thread stops once it has an answer for each of its lines
-- (a bounded fill); otherwise it wraps around and counts the wrap-arounds.
dofile("scripts/load/report.lua")

statuses = {}
wrapped = 0
local list, next_i, answered, stop = {}, 1, 0, false

function init(args)
   local n = tonumber(args[2]) or 1
   local i = 0
   for line in io.lines(args[1]) do
      if i % n == id then table.insert(list, line) end
      i = i + 1
   end
   stop = args[3] == "stop"
end

function request()
   if next_i > #list then
      next_i = 1
      wrapped = wrapped + 1
   end
   local authid = list[next_i]
   next_i = next_i + 1
   return wrk.format("GET", "/refresh", { ["X-AuthID"] = authid })
end

function response(status, headers, body)
   local k = tostring(status)
   statuses[k] = (statuses[k] or 0) + 1
   answered = answered + 1
   if stop and answered >= #list then wrk.thread:stop() end
end
