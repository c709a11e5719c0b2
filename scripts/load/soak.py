"""Soak driver for scripts/soak.sh: sends a fixed request rate for a set
time to one broker on 127.0.0.1 and prints a Markdown report.

Each request is drawn, in fixed proportions, from:
  hit       a login whose token is cached (the pool was refreshed once)
  miss      a fresh login of a provider that keeps its refresh token
  rotation  a fresh login of a provider that rotates (single use): the
            answer must carry a new AuthID (v2_authid)
  rotated   a new AuthID from an earlier rotation answer (a cache hit)
  bad       garbage, a truncated AuthID, or one with a flipped character,
            from a few client addresses (X-Forwarded-For; the broker trusts
            127.0.0.1 as a proxy), so the per-address limit answers 429

Latency is measured from the moment a request was due, not when a worker
got to it, so a stalled server shows in the percentiles.
"""

import http.client
import json
import queue
import random
import sys
import threading
import time
import urllib.parse

MIX = [("hit", 0.60), ("miss", 0.20), ("rotation", 0.10), ("rotated", 0.05), ("bad", 0.05)]
EXPECTED = {
    "hit": {200},
    "miss": {200},
    "rotation": {200},
    "rotated": {200},
    "bad": {400, 401, 429},
}
WORKERS = 32


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    url, pid, rate, seconds, hit_file, miss_file, rot_file = sys.argv[1:8]
    rate, seconds = float(rate), float(seconds)
    target = urllib.parse.urlsplit(url)
    hits = open(hit_file).read().split()
    misses = open(miss_file).read().split()
    rots = open(rot_file).read().split()
    rng = random.Random(7)
    rotated = []  # AuthIDs handed out by rotation answers
    lock = threading.Lock()

    def bad_authid():
        kind = rng.randrange(3)
        if kind == 0:
            return "v3:" + "".join(rng.choice("abcXYZ019-_.") for _ in range(rng.randrange(5, 80)))
        base = rng.choice(hits)
        if kind == 1:
            return base[: rng.randrange(10, len(base) - 1)]
        i = rng.randrange(40, len(base) - 1)
        c = "A" if base[i] != "A" else "B"
        return base[:i] + c + base[i + 1 :]

    total = int(rate * seconds)
    names = [m[0] for m in MIX]
    weights = [m[1] for m in MIX]
    plan = []
    mi = ri = 0
    for n in range(total):
        kind = rng.choices(names, weights)[0]
        if kind == "miss":
            if mi >= len(misses):
                kind = "hit"
            else:
                plan.append((kind, misses[mi], f"10.1.{mi // 250 % 250}.{mi % 250 + 1}"))
                mi += 1
                continue
        if kind == "rotation":
            if ri >= len(rots):
                kind = "hit"
            else:
                plan.append((kind, rots[ri], f"10.2.{ri // 250 % 250}.{ri % 250 + 1}"))
                ri += 1
                continue
        if kind == "hit":
            i = rng.randrange(len(hits))
            plan.append((kind, hits[i], f"10.0.{i // 250 % 250}.{i % 250 + 1}"))
        elif kind == "rotated":
            plan.append((kind, None, "10.3.0.1"))
        else:
            plan.append((kind, bad_authid(), f"10.66.0.{rng.randrange(1, 5)}"))

    work = queue.Queue()
    results = []  # (kind, status, latency_s)

    def worker():
        conn = None
        while True:
            item = work.get()
            if item is None:
                return
            due, kind, authid, addr = item
            if kind == "rotated":
                with lock:
                    authid = rng.choice(rotated) if rotated else None
                if authid is None:
                    kind, authid = "hit", hits[0]
            status = 0
            body = b""
            for attempt in range(2):
                try:
                    if conn is None:
                        conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
                    conn.request("GET", "/refresh", headers={"X-AuthID": authid, "X-Forwarded-For": addr})
                    r = conn.getresponse()
                    body = r.read()
                    status = r.status
                    break
                except (OSError, http.client.HTTPException):
                    conn = None
                    status = 0
            latency = time.monotonic() - due
            if kind == "rotation" and status == 200:
                new = json.loads(body).get("v2_authid")
                if new:
                    with lock:
                        rotated.append(new)
                else:
                    status = -1  # answered, but without the rotated AuthID
            with lock:
                results.append((kind, status, latency))

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(WORKERS)]
    for t in threads:
        t.start()
    rss_start = rss_kb(pid)
    rss_samples = [rss_start]
    start = time.monotonic()
    next_sample = start + 5
    for n, (kind, authid, addr) in enumerate(plan):
        due = start + n / rate
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
        work.put((due, kind, authid, addr))
        if time.monotonic() >= next_sample:
            rss_samples.append(rss_kb(pid))
            next_sample += 5
    for _ in threads:
        work.put(None)
    for t in threads:
        t.join(timeout=60)
    elapsed = time.monotonic() - start
    time.sleep(1)
    rss_end = rss_kb(pid)
    rss_samples.append(rss_end)

    def pct(xs, p):
        if not xs:
            return float("nan")
        xs = sorted(xs)
        return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]

    print(f"- {len(results):,} requests in {elapsed:.1f} s ({len(results) / elapsed:.1f} req/s; "
          f"asked {rate:g} req/s for {seconds:g} s)")
    print(f"- p50 {pct([r[2] for r in results], 50) * 1000:.2f} ms, "
          f"p99 {pct([r[2] for r in results], 99) * 1000:.2f} ms, "
          f"max {max(r[2] for r in results) * 1000:.1f} ms (all requests, from when each was due)")
    unexpected = [r for r in results if r[1] not in EXPECTED[r[0]]]
    print(f"- unexpected answers: {len(unexpected)}"
          + (" (" + ", ".join(f"{k} {s}" for k, s, _ in unexpected[:10]) + ")" if unexpected else ""))
    print(f"- broker RSS: start {rss_start / 1024:.1f} MB, end {rss_end / 1024:.1f} MB, "
          f"max {max(rss_samples) / 1024:.1f} MB (sampled every 5 s)")
    print()
    print("| kind | requests | answers by status | p50 | p99 | expected statuses |")
    print("|---|---:|---|---:|---:|---|")
    for kind in names:
        rs = [r for r in results if r[0] == kind]
        if not rs:
            continue
        by = {}
        for _, s, _ in rs:
            by[s] = by.get(s, 0) + 1
        statuses = ", ".join(f"{s if s > 0 else ('no answer' if s == 0 else '200 without v2_authid')}: {n:,}"
                             for s, n in sorted(by.items()))
        lat = [r[2] for r in rs]
        print(f"| {kind} | {len(rs):,} | {statuses} | {pct(lat, 50) * 1000:.2f} ms | {pct(lat, 99) * 1000:.2f} ms "
              f"| {', '.join(map(str, sorted(EXPECTED[kind])))} |")
    sys.exit(1 if unexpected else 0)


if __name__ == "__main__":
    main()
