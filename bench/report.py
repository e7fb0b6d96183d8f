#!/usr/bin/env python3
"""Turns bench/run's results file into RESULTS.md on standard output."""
import platform
import subprocess
import sys
from collections import defaultdict
from datetime import datetime, timezone


def sh(command):
    try:
        return subprocess.run(command, shell=True, capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""


def main():
    path, duration, connections = sys.argv[1], sys.argv[2], sys.argv[3]
    routes = defaultdict(dict)   # (store, size) -> name -> fields
    facts = defaultdict(dict)    # (store, size) -> metric -> value
    for line in open(path):
        parts = line.split()
        if len(parts) < 4:
            continue
        store, size, kind = parts[0], parts[1], parts[2]
        if kind == "route":
            fields = dict(p.split("=", 1) for p in parts[4:] if "=" in p)
            routes[(store, size)][parts[3]] = {k: float(v) for k, v in fields.items()}
        else:
            facts[(store, size)][kind] = parts[3]

    out = []
    w = out.append
    commit = sh("git rev-parse --short HEAD")
    w("# Benchmark results\n")
    w(f"Produced by `bench/run` on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC at commit `{commit}`: "
      f"wrk with 2 threads and {connections} connections, {duration} s a route, the release "
      "server with rate limiting off (`--rate-limit-burst 0`, `--max-in-flight 100000`), "
      "SQLite in WAL mode with `synchronous=FULL` (every acknowledged write synced), "
      "PostgreSQL 'as installed' on the same machine with `synchronous_commit=on`.\n")
    w("## Machine\n")
    w("```")
    w(f"nproc: {sh('nproc')}")
    w(sh("lscpu | grep -E 'Model name|^CPU\\(s\\)|Thread|MHz|L2|L3'"))
    w(sh("free -m"))
    w(f"kernel: {platform.release()}")
    w(f"load average at start {facts[('all', 'all')].get('load_start', '?')}, at end {facts[('all', 'all')].get('load_end', '?')}")
    w("```\n")
    w("wrk, the server and PostgreSQL share these cores; the ceiling (`/healthz`) is measured "
      "in the same conditions, so each route is also shown as a fraction of it.\n")

    for (store, size), named in routes.items():
        ceiling = named.get("healthz", {}).get("rps") or 1
        w(f"## {store}, {int(size):,} customers\n")
        w("| route | requests/s | of ceiling | p50 ms | p99 ms | non-2xx | socket errors |")
        w("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for name, r in named.items():
            w(f"| {name} | {r['rps']:,.0f} | {r['rps'] / ceiling:.0%} | {r['p50_ms']:.2f} | "
              f"{r['p99_ms']:.2f} | {int(r['non2xx'])} | {int(r['socket_errors'])} |")
        f = facts[(store, size)]
        w("")
        w("| measure | value |")
        w("| --- | ---: |")
        rows = [
            ("import (CLI, one transaction)", f.get("import_s"), "s"),
            ("export (CLI, JSON Lines)", f.get("export_s"), "s"),
            ("full crawl page=1.. until has_more is false", f.get("crawl_s"), "s"),
            ("pages crawled", f.get("crawl_pages"), ""),
            ("first request of the deep page (nothing remembered)", f.get("deep_page_cold_s"), "s"),
            ("resident memory idle", kib(f.get("rss_idle_kib")), "MB"),
            ("resident memory, most under load", kib(f.get("rss_load_max_kib")), "MB"),
            ("resident memory after the load", kib(f.get("rss_after_kib")), "MB"),
        ]
        for label, value, unit in rows:
            if value is not None:
                w(f"| {label} | {value} {unit} |")
        w("")

    w("## Against the targets\n")
    w("| target | store | measured | met |")
    w("| --- | --- | --- | --- |")
    sizes = sorted({int(s) for (_, s) in routes})
    big = str(sizes[-1]) if sizes else None
    small = str(sizes[0]) if sizes else None
    for store, share in (("sqlite", 0.8), ("postgres", 0.5)):
        for size in sizes:
            r = routes.get((store, str(size)))
            if not r:
                continue
            frac = r["get_one"]["rps"] / r["healthz"]["rps"]
            w(f"| GET one ≥ {share:.0%} of ceiling ({size:,}) | {store} | {frac:.0%} | {yes(frac >= share)} |")
    for size in sizes:
        r = routes.get(("sqlite", str(size)))
        if r:
            p = r["post_create"]
            w(f"| POST ≥ 20 000/s, p99 < 10 ms ({size:,}) | sqlite | {p['rps']:,.0f}/s, p99 {p['p99_ms']:.2f} ms | "
              f"{yes(p['rps'] >= 20000 and p['p99_ms'] < 10)} |")
    for (store, size), r in routes.items():
        if size != big:
            continue
        ratio = r["list_page_1"]["p50_ms"] and r["list_deep_page"]["p50_ms"] / r["list_page_1"]["p50_ms"]
        w(f"| deep page ≤ 3× page 1 (p50, {int(size):,}) | {store} | {ratio:.2f}× | {yes(ratio <= 3)} |")
        f = facts[(store, size)]
        crawl = float(f.get("crawl_s", "inf"))
        w(f"| crawl of {int(size):,} < 60 s | {store} | {crawl:.1f} s | {yes(crawl < 60)} |")
        imp, exp = float(f.get("import_s", "inf")), float(f.get("export_s", "inf"))
        w(f"| import of {int(size):,} < 30 s | {store} | {imp:.1f} s | {yes(imp < 30)} |")
        w(f"| export of {int(size):,} < 15 s | {store} | {exp:.1f} s | {yes(exp < 15)} |")
        idle_big = float(f.get("rss_idle_kib", 0)) / 1024
        idle_small = float(facts[(store, small)].get("rss_idle_kib", 0)) / 1024
        w(f"| RSS idle < 30 MB, flat {int(small):,} → {int(size):,} | {store} | "
          f"{idle_small:.1f} → {idle_big:.1f} MB | {yes(idle_big < 30 and idle_big < idle_small * 1.5 + 2)} |")
    w("")
    print("\n".join(out))


def kib(value):
    return None if value is None else f"{float(value) / 1024:.1f}"


def yes(ok):
    return "yes" if ok else "**no**"


if __name__ == "__main__":
    main()
