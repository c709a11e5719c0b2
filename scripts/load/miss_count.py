"""A fixed number of cache misses for counting a server's instructions per
miss (scripts/bench-miss-profile.sh): one `GET /refresh` per AuthID of
FILE lines [START, START + COUNT), each AuthID used once, over CONNECTIONS
keep-alive HTTP/1.1 connections; exits non-zero unless every answer is 200.

    python3 scripts/load/miss_count.py URL FILE START COUNT CONNECTIONS

Its own speed does not matter: only the server's instructions are counted.
"""

import socket
import sys
import threading
from urllib.parse import urlsplit

from fixed_count import read_answer


def run(url: str, authids: list[str], connections: int) -> None:
    parts = urlsplit(url)
    host, port = parts.hostname, parts.port or 80
    head = f"GET {parts.path or '/'} HTTP/1.1\r\nHost: {host}:{port}\r\nX-AuthID: "
    failures: list[str] = []

    def worker(mine: list[str]) -> None:
        with socket.create_connection((host, port)) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            reader = s.makefile("rb")
            for authid in mine:
                s.sendall((head + authid + "\r\n\r\n").encode())
                status = read_answer(reader)
                if len(status) < 2 or status[1] != b"200":
                    failures.append(repr(status))
                    return

    threads = [
        threading.Thread(target=worker, args=(authids[i::connections],))
        for i in range(connections)
        if authids[i::connections]
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        sys.exit(f"answers other than 200: {failures[:3]}")


if __name__ == "__main__":
    url, path, start, count, conns = sys.argv[1:6]
    with open(path) as f:
        lines = [line.strip() for line in f]
    chosen = lines[int(start) : int(start) + int(count)]
    if len(chosen) < int(count):
        sys.exit(f"{path} holds too few AuthIDs")
    run(url, chosen, int(conns))
