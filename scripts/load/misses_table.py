"""The table of scripts/load/misses.sh from its notes file: per store, the
broker's CPU time per miss in P-256 ECDH floors (one derivation on one
core by CPU time, measured around the run), misses per second beside the
ECDH rate of every core, and the latency added over the token endpoint.

    python3 scripts/load/misses_table.py NOTES SECONDS ONE_SECONDS CORES
"""

import json
import sys

path, seconds, one, cores = sys.argv[1:5]
runs, notes = {}, {}
for line in open(path):
    first, _, rest = line.strip().partition(" ")
    if rest.startswith("{"):
        runs[first] = json.loads(rest)
    else:
        name, _, value = rest.partition(" ")
        notes.setdefault(first, {})[name] = float(value)


def check(label, r):
    bad = {k: v for k, v in r["errors"].items() if v}
    statuses = {s: n for s, n in r.get("statuses", {}).items() if s != "200"}
    if bad or statuses or r.get("wrapped", {}).get("n"):
        print(f"WARNING: {label}: errors {bad}, statuses {statuses}, wrapped {r.get('wrapped')}", file=sys.stderr)


direct = runs["direct1"]
check("direct1", direct)
multi = notes["all"]["multi"]
names = {"embedded": "embedded (default)", "memory": "`STORE=memory`", "redis": "Redis"}
goals = {"embedded": 2.0, "memory": 1.8}
print(f"- token endpoint alone (`wrk -t1 -c1 -d{one}s`, the form the broker posts): "
      f"p50 {direct['p50_us'] / 1000:.3f} ms, p99 {direct['p99_us'] / 1000:.3f} ms")
print(f"- ECDH on all {cores} cores (`openssl speed -multi {cores} ecdhp256`, by the clock): {multi:,.0f}/s")
print()
print("| store | CPU per miss (user + system) | one ECDH (CPU) | **floors per miss** | of which user / system | goal | misses/s (16 conn.) | ÷ ECDH/s of all cores | added p50 | added p99 |")
print("|---|---:|---:|---:|---:|---|---:|---:|---:|---:|")
for store in ["embedded", "memory", "redis"]:
    key = "sixteen_" + store
    if key not in runs:
        continue
    sixteen, single = runs[key], runs["one_" + store]
    check(key, sixteen)
    check("one_" + store, single)
    n = notes[store]
    ecdh_us = 2e6 / (n["speed_before"] + n["speed_after"])
    ok = [r for s, r in sixteen.get("statuses", {}).items() if s == "200"]
    answered = sum(ok) if ok else sixteen["requests"]
    user_us = n["user_s"] * 1e6 / max(answered, 1)
    sys_us = n["sys_s"] * 1e6 / max(answered, 1)
    cpu_us = user_us + sys_us
    floors = cpu_us / ecdh_us
    goal = goals.get(store)
    goal_text = f"≤ {goal} ({'met' if floors <= goal else '**not met**'})" if goal else "(round trips)"
    added50 = (single["p50_us"] - direct["p50_us"]) / 1000
    added99 = (single["p99_us"] - direct["p99_us"]) / 1000
    print(f"| {names[store]} | {cpu_us:.0f} µs | {ecdh_us:.1f} µs | **{floors:.2f}** | "
          f"{user_us / ecdh_us:.2f} / {sys_us / ecdh_us:.2f} | {goal_text} | "
          f"{sixteen['rps']:,.0f} | {sixteen['rps'] / multi:.2f} | {added50:+.2f} ms | {added99:+.2f} ms |")
if "hit_memory" in runs and "hit" in notes:
    hit = runs["hit_memory"]
    check("hit_memory", hit)
    hit_us = notes["hit"]["cpu_s"] * 1e6 / max(hit["requests"], 1)
    ecdh_us = 1e6 / notes["hit"]["speed"]
    print()
    print(f"- for scale, a cache hit (`STORE=memory`, `wrk -t2 -c16 -d5s`, one HTTP exchange, no open, "
          f"no provider): {hit_us:.1f} µs of CPU, **{hit_us / ecdh_us:.2f} floors**")
