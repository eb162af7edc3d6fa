"""A bounded closed-loop HTTP load generator, run in its own process so the servers under
test never share its interpreter (or GIL) with it.

``python -m bench.loadgen PORT PATH BODY_FILE CLIENTS MAX_REQUESTS MAX_SECONDS`` prints one
JSON line: ``n``, ``errors``, ``rps``, ``p50``, ``p99`` (ms). Each client is a thread with
one keep-alive ``http.client`` connection to 127.0.0.1 that sends the next request when the
previous answer has arrived; the run stops at ``MAX_REQUESTS`` in all or ``MAX_SECONDS``.
"""

from __future__ import annotations

import http.client
import json
import sys
import threading
import time

WARMUP_REQUESTS = 20


def _client(port: int, path: str, body: bytes, stop_at: float, budget: list[int], lock: threading.Lock,
            latencies: list[float], errors: list[int]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Content-Type": "application/json"}
    try:
        while time.perf_counter() < stop_at:
            with lock:
                if budget[0] <= 0:
                    break
                budget[0] -= 1
            t0 = time.perf_counter()
            conn.request("POST", path, body=body, headers=headers)
            resp = conn.getresponse()
            resp.read()
            dt = time.perf_counter() - t0
            with lock:
                if resp.status == 200:
                    latencies.append(dt)
                else:
                    errors.append(resp.status)
    finally:
        conn.close()


def run(port: int, path: str, body: bytes, clients: int, max_requests: int, max_seconds: float) -> dict:
    lock = threading.Lock()
    _client(port, path, body, time.perf_counter() + 10, [WARMUP_REQUESTS], lock, [], [])
    latencies: list[float] = []
    errors: list[int] = []
    budget = [max_requests]
    t0 = time.perf_counter()
    threads = [threading.Thread(target=_client, args=(port, path, body, t0 + max_seconds, budget, lock,
                                                      latencies, errors)) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    ms = sorted(x * 1000.0 for x in latencies)

    def pct(q: float) -> float:
        return ms[min(len(ms) - 1, round(q / 100 * (len(ms) - 1)))] if ms else float("nan")

    return {"n": len(ms), "errors": len(errors), "rps": len(ms) / wall, "p50": pct(50), "p99": pct(99)}


def main(argv: list[str]) -> None:
    port, path, body_file, clients, max_requests, max_seconds = argv
    with open(body_file, "rb") as f:
        body = f.read()
    print(json.dumps(run(int(port), path, body, int(clients), int(max_requests), float(max_seconds))))


if __name__ == "__main__":
    main(sys.argv[1:])
