"""The tables of scripts/bench-miss-profile.sh: instructions per miss by
phase, for each store, from `callgrind_annotate --inclusive=yes` of the
LARGE window, in P-256 scalar multiplications (`EC_POINT_mul`) of the same
profile.

    python3 scripts/load/miss_breakdown.py COUNTS SMALL LARGE

COUNTS has one line per store: NAME I_SMALL I_LARGE ANNOTATE_FILE.
A phase is the inclusive count of the function that owns it (the largest
match when several names match, so nested frames are not added twice).
"""

import re
import sys

# (label, regex of the owning function, indent level)
PHASES = [
    ("AuthID open: parse, ECDH, Concat KDF, key unwrap, AES-GCM, provider", r"oauth_broker::refresh::Refresher::open_any::\{\{closure\}\}$", 0),
    ("of which the P-256 scalar multiplication (`EC_POINT_mul`): **the floor**", r"^EC_POINT_mul$", 1),
    ("flight task: store, provider call, answer (`SingleFlight::run`)", r"oauth_broker::sync::single_flight::SingleFlight<K,V>::run::\{\{closure\}\}::\{\{closure\}\}$", 0),
    ("login vault: HKDF of the login's store keys (`Vault::for_login`)", r"oauth_broker::vault::Vault::for_login$", 1),
    ("store read: shared access token (`LoginRecords::token`)", r"oauth_broker::refresh::records::LoginRecords::token::\{\{closure\}\}$", 1),
    ("store read: backoff window (`Guard::blocked_anywhere`)", r"oauth_broker::provider::admission::Guard::blocked_anywhere::\{\{closure\}\}$", 1),
    ("store read: revocation mark (`LoginRecords::is_revoked`)", r"oauth_broker::refresh::records::LoginRecords::is_revoked::\{\{closure\}\}$", 1),
    ("provider call (`send_refresh`)", r"send_refresh::\{\{closure\}\}$", 1),
    ("HTTP client: form, reqwest/hyper, body (`HttpTokenClient::send`)", r"oauth_broker::provider::client::HttpTokenClient::send::\{\{closure\}\}$", 2),
    ("answer parsing (`classify`, JSON)", r"oauth_broker::provider::outcome::classify$", 2),
    ("store write: shared access token (`LoginRecords::put_token`)", r"oauth_broker::refresh::records::LoginRecords::put_token::\{\{closure\}\}$", 1),
    ("answer: re-seal if needed, cache (`conclude`)", r"oauth_broker::refresh::answer::<impl oauth_broker::refresh::Inner>::conclude$", 1),
    ("embedded store: writer thread, commits (`write_loop`)", r"oauth_broker::store::embedded::writer::write_loop$", 0),
    ("embedded store: reads on the blocking pool (`EmbeddedStore::read`)", r"oauth_broker::store::embedded::EmbeddedStore::read::\{\{closure\}\}$", 0),
    ("Redis: the connection's task (`redis::aio`)", r"^<redis::aio::multiplexed_connection::PipelineSink<T>|^redis::aio::multiplexed_connection::.*\{\{closure\}\}$", 0),
    ("metrics (`oauth_broker::metrics`)", r"^oauth_broker::metrics::", 0),
    ("logs (`tracing_subscriber`)", r"^<tracing_subscriber::fmt::fmt_layer::Layer", 0),
]
TOP = {0, 2, 12, 13, 14}  # rows that do not nest in one another (the rest is the HTTP server)

line_re = re.compile(r"^\s*([\d,]+)\s+\([^)]*\)\s+(?:[^:]*):(.*?)\s+\[[^\]]*\]\s*$")


def inclusive(path):
    out = {}
    for line in open(path, errors="replace"):
        m = line_re.match(line)
        if m:
            name = m.group(2).rstrip("'0123456789").rstrip("'")
            # Recursion copies (name'2) are nested in the plain one.
            if m.group(2).endswith(("'2", "'3", "'4")):
                continue
            out[name] = max(out.get(name, 0), int(m.group(1).replace(",", "")))
    return out


path, small, large = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
stores = []
for line in open(path):
    name, a, b, annotate = line.split()
    stores.append((name, (int(b) - int(a)) / (large - small), inclusive(annotate)))

cols = [s[0] for s in stores]
print("Instructions per miss (callgrind, user space; kernel work not counted), and in P-256 scalar "
      "multiplications of the same profile (`EC_POINT_mul`, the ECDH floor):")
print()
print("| phase | " + " | ".join(cols) + " |")
print("|---|" + "---:|" * len(cols))
floors = {}
rows = []
for name, total, inc in stores:
    floors[name] = max((v for k, v in inc.items() if re.search(PHASES[1][1], k)), default=0) / large
row_values = []
for i, (label, pattern, depth) in enumerate(PHASES):
    vals = []
    for name, total, inc in stores:
        v = max((v for k, v in inc.items() if re.search(pattern, k)), default=0) / large
        vals.append(v)
    row_values.append(vals)
    if not any(vals):
        continue
    cells = [f"{v:,.0f} ({v / floors[n]:.2f})" if v else "–" for v, (n, _, _) in zip(vals, stores)]
    print(f"| {'&nbsp;' * 4 * depth}{label} | " + " | ".join(cells) + " |")
rest = []
for j, (name, total, inc) in enumerate(stores):
    rest.append(total - sum(row_values[i][j] for i in TOP))
print("| HTTP server, middleware, runtime and the rest (total minus the rows above at the left margin) | "
      + " | ".join(f"{v:,.0f} ({v / floors[n]:.2f})" for v, (n, _, _) in zip(rest, stores)) + " |")
print("| **total per miss** | " + " | ".join(f"**{t:,.0f} ({t / floors[n]:.2f})**" for n, t, _ in stores) + " |")
