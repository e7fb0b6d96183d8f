-- PUT a new first name on a random customer among the ids 1..BENCH_CUSTOMERS:
-- always a real change, so every request writes.
dofile(os.getenv("BENCH_DIR") .. "/common.lua")
wrk.headers["Content-Type"] = "application/json"

function request()
  local body = string.format('{"address":{"firstname":"Muutettu%d"}}', math.random(1, 2 ^ 30))
  return wrk.format("PUT", "/api/v1/customers/" .. math.random(1, customers), nil, body)
end
