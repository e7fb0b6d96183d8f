-- A GET of the URL given to wrk, with the key: list pages and /healthz.
dofile(os.getenv("BENCH_DIR") .. "/common.lua")
