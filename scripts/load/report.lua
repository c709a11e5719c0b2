-- Shared by the wrk scripts of scripts/bench-load.sh: at the end, one JSON
-- line on stdout ("RESULT {...}") with throughput, latency percentiles,
-- socket errors, and what the threads counted (statuses, list wrap-arounds).

threads = {}

function setup(thread)
   thread:set("id", #threads)
   table.insert(threads, thread)
end

local function counts(name)
   local total = {}
   for _, t in ipairs(threads) do
      local c = t:get(name)
      if type(c) == "table" then
         for k, v in pairs(c) do total[k] = (total[k] or 0) + v end
      elseif type(c) == "number" then
         total["n"] = (total["n"] or 0) + c
      end
   end
   local parts = {}
   for k, v in pairs(total) do table.insert(parts, string.format('"%s":%d', k, v)) end
   return "{" .. table.concat(parts, ",") .. "}"
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'RESULT {"requests":%d,"duration_us":%d,"rps":%.1f,"p50_us":%d,"p90_us":%d,"p99_us":%d,"mean_us":%.1f,' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},"statuses":%s,"wrapped":%s}\n',
      summary.requests, summary.duration, summary.requests / summary.duration * 1e6,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean,
      e.connect, e.read, e.write, e.status, e.timeout, counts("statuses"), counts("wrapped")))
end
