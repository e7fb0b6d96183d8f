-- Shared by every benchmark script: the API key from the environment, and
-- one machine-readable line of results at the end for bench/run to parse.
wrk.headers["Authorization"] = "Token " .. (os.getenv("BENCH_KEY") or "")
customers = tonumber(os.getenv("BENCH_CUSTOMERS") or "1")

function setup(thread)
  thread:set("seed", math.random(1, 2 ^ 30))
end

function init(args)
  math.randomseed(seed or os.time())
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT rps=%.1f p50_ms=%.3f p99_ms=%.3f non2xx=%d socket_errors=%d requests=%d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    e.status, e.connect + e.read + e.write + e.timeout, summary.requests))
end
