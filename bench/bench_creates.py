#!/usr/bin/python3
"""bench_creates.py: POST /v1/jobs throughput (creates/s) against a fresh
cryomambad, with C concurrent keep-alive connections each sending one create
at a time, for D seconds. Every 201 counts only once the server answered it,
and since the server acknowledges a create only after its record is
committed, this measures durable creates/s (group commit batches the
commits of creates that arrive together).

    /usr/bin/python3 bench/bench_creates.py build/src/server/cryomambad \
        [--conns 1,8,64] [--seconds 5]

Prints one line per concurrency: creates/s, p50/p99 latency, and the number
of non-201 answers. Compare two binaries by running it on each, in one run.
"""

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

BODY = b'{"volume":{"shape":[8,8,8]},"params":{"duration_s":3600}}'
REQ = (b"POST /v1/jobs HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\n"
       b"Content-Length: %d\r\n\r\n" % len(BODY)) + BODY


async def client(port, stop_at, lat, bad):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.monotonic() < stop_at:
            t0 = time.monotonic()
            w.write(REQ)
            head = await r.readuntil(b"\r\n\r\n")
            m = re.search(rb"Content-Length: (\d+)", head)
            await r.readexactly(int(m.group(1)))
            if not head.startswith(b"HTTP/1.1 201"):
                bad.append(head.split(b"\r\n")[0])
                if head.startswith(b"HTTP/1.1 429"):
                    await asyncio.sleep(0.01)
                continue
            lat.append(time.monotonic() - t0)
    finally:
        w.close()


async def run_level(port, conns, seconds):
    lat, bad = [], []
    stop_at = time.monotonic() + seconds
    t0 = time.monotonic()
    await asyncio.gather(*(client(port, stop_at, lat, bad) for _ in range(conns)))
    elapsed = time.monotonic() - t0
    lat.sort()
    p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1e3 if lat else float("nan")
    return len(lat) / elapsed, p(0.5), p(0.99), len(bad)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("server")
    ap.add_argument("--conns", default="1,8,64")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--extra", default="", help="extra server flags")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench-creates-")
    cmd = [a.server, "--port", "0", "--state-dir", tmp, "--log-level", "warn",
           "--max-running", "1"] + a.extra.split()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        line = proc.stdout.readline().decode()
        port = int(re.search(r":(\d+)\s*$", line).group(1))
        print("# %s  (state dir on %s)" % (" ".join(cmd), tmp))
        print("%-6s %10s %9s %9s %6s" % ("conns", "creates/s", "p50 ms", "p99 ms", "non201"))
        for c in [int(x) for x in a.conns.split(",")]:
            rate, p50, p99, bad = asyncio.run(run_level(port, c, a.seconds))
            print("%-6d %10.0f %9.2f %9.2f %6d" % (c, rate, p50, p99, bad))
            sys.stdout.flush()
    finally:
        proc.terminate()
        proc.wait(30)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
