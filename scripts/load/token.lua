-- POST a refresh_token grant to a token endpoint (the mock provider), with
-- a different refresh token on every request, as the broker sends it.
dofile("scripts/load/report.lua")

statuses = {}
wrapped = 0
local n = 0

function request()
   n = n + 1
   local body = "grant_type=refresh_token&refresh_token=rt-direct-" .. id .. "-" .. n ..
      "&client_id=bench-client&client_secret=bench-secret"
   return wrk.format("POST", nil, {
      ["Content-Type"] = "application/x-www-form-urlencoded",
      ["Accept"] = "application/json",
   }, body)
end

function response(status, headers, body)
   local k = tostring(status)
   statuses[k] = (statuses[k] or 0) + 1
end
