#!/usr/bin/python3
"""bench_stalled.py: server memory per WebSocket subscriber that never
reads. A 64x256x256 job at 10 Hz, preview_scale 1 (a 5.6 MB base64 preview),
then N subscribers with 4 KiB receive buffers, each subscribing after a new
preview (so each stalls on a frame of its own) and never reading; RSS is
read from /proc before the first and after the last, once a few more
previews went by.

    /usr/bin/python3 bench/bench_stalled.py build/src/server/cryomambad [-n 200]

Prints RSS before/after, the growth per stalled subscriber and, where the
server has it, /metrics' held bytes and dropped slow readers.
"""

import argparse
import base64
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def metrics(port):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("GET", "/metrics")
    out = {}
    for line in c.getresponse().read().decode().splitlines():
        if line and not line.startswith("#"):
            k, _, v = line.rpartition(" ")
            out[k] = float(v)
    return out


def stalled_subscriber(port, jid):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(("GET /ws/jobs/%s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
               "Sec-WebSocket-Version: 13\r\n\r\n" % (jid, key)).encode())
    return s  # never read


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("server")
    ap.add_argument("-n", type=int, default=200)
    a = ap.parse_args()
    state = tempfile.mkdtemp(prefix="bench-stalled-")
    p = subprocess.Popen([a.server, "--port", "0", "--state-dir", state, "--log-level",
                          "error", "--ws-ping-interval", "600"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    socks = []
    try:
        port = int(re.search(r":(\d+)\s*$", p.stdout.readline().decode()).group(1))
        c = http.client.HTTPConnection("127.0.0.1", port)
        c.request("POST", "/v1/jobs", body=json.dumps(
            {"volume": {"shape": [64, 256, 256]},
             "params": {"preview_hz": 10, "preview_scale": 1, "duration_s": 600}}))
        jid = json.loads(c.getresponse().read())["job_id"]
        published = lambda: metrics(port).get("cryomamba_previews_published_total", 0)
        while published() < 3:
            time.sleep(0.05)
        before = rss_kib(p.pid)
        for _ in range(a.n):
            seen = published()
            while published() == seen:
                time.sleep(0.01)
            socks.append(stalled_subscriber(port, jid))
        seen = published()
        while published() < seen + 5:
            time.sleep(0.05)
        after = rss_kib(p.pid)
        m = metrics(port)
        print("# %s: %d stalled subscribers, 64x256x256 at 10 Hz, scale 1" % (a.server, a.n))
        print("RSS before %.1f MB, after %.1f MB: +%.1f MB, %.2f MB per stalled subscriber"
              % (before / 1024, after / 1024, (after - before) / 1024,
                 (after - before) / 1024 / a.n))
        if "cryomamba_held_bytes" in m:
            print("held for slow readers %.1f MB, slow readers dropped %d"
                  % (m["cryomamba_held_bytes"] / 1e6, m["cryomamba_slow_readers_dropped_total"]))
    finally:
        for s in socks:
            s.close()
        p.terminate()
        p.wait(30)
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
