-- POST a new customer with a random name, so inserts land all over the
-- list order as real ones do.
dofile(os.getenv("BENCH_DIR") .. "/common.lua")
wrk.headers["Content-Type"] = "application/json"

local lastnames = {"Virtanen", "Korhonen", "Mäkinen", "Nieminen", "Hämäläinen", "Laine", "Järvinen", "Öhman", "Åberg", "Lehtonen"}

function request()
  local n = math.random(1, 2 ^ 30)
  local body = string.format(
    '{"email":"new%d@example.com","address":{"firstname":"Uusi%d","lastname":"%s","city":"Helsinki","postcode":"00100","country":"FI"}}',
    n, n, lastnames[n % #lastnames + 1])
  return wrk.format("POST", "/api/v1/customers", nil, body)
end
