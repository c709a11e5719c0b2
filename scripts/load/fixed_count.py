"""A fixed amount of work for counting a server's instructions per request
(scripts/bench-instructions.sh): exactly COUNT `GET` requests over
CONNECTIONS keep-alive HTTP/1.1 connections, with the given headers; exits
non-zero unless every answer is 200.

    python3 scripts/load/fixed_count.py URL COUNT CONNECTIONS [HEADER: value]...

Its own speed does not matter: only the server's instructions are counted.
"""

import socket
import sys
import threading
from urllib.parse import urlsplit


def read_answer(reader) -> list[bytes]:
    """Reads one HTTP/1.1 answer with a Content-Length body from `reader`
    and returns its status line, split."""
    status = reader.readline().split()
    length = 0
    while (line := reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    reader.read(length)
    return status


def run(url: str, count: int, connections: int, headers: list[str]) -> None:
    parts = urlsplit(url)
    host, port = parts.hostname, parts.port or 80
    request = (
        f"GET {parts.path or '/'} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        + "".join(h + "\r\n" for h in headers)
        + "\r\n"
    ).encode()
    shares = [count // connections + (i < count % connections) for i in range(connections)]
    failures: list[str] = []

    def worker(n: int) -> None:
        with socket.create_connection((host, port)) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            reader = s.makefile("rb")
            for _ in range(n):
                s.sendall(request)
                status = read_answer(reader)
                if len(status) < 2 or status[1] != b"200":
                    failures.append(repr(status))
                    return

    threads = [threading.Thread(target=worker, args=(n,)) for n in shares if n]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        sys.exit(f"answers other than 200: {failures[:3]}")


if __name__ == "__main__":
    run(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:])
