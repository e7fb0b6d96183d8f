-- GET one customer chosen at random among the ids 1..BENCH_CUSTOMERS.
dofile(os.getenv("BENCH_DIR") .. "/common.lua")

function request()
  return wrk.format("GET", "/api/v1/customers/" .. math.random(1, customers))
end
