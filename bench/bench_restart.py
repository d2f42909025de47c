#!/usr/bin/python3
"""bench_restart.py: start-up time and listing cost with many stored jobs.
Fills a fresh state directory with N finished job records (copies of a real
record the server wrote, with new ids and increasing creation times), then
times the server from exec to its "listening" line, and GET /v1/jobs (the
default page) and /v1/healthz while listings run.

    /usr/bin/python3 bench/bench_restart.py build/src/server/cryomambad [-n 100000]

Run it on two binaries to compare them on the same machine, in one run.
"""

import argparse
import http.client
import json
import os
import re
import shutil
import sqlite3
import subprocess
import tempfile
import threading
import time
import uuid


def start(server, state, extra=()):
    t0 = time.monotonic()
    p = subprocess.Popen([server, "--port", "0", "--state-dir", state, "--log-level", "warn"]
                         + list(extra), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    line = p.stdout.readline().decode()
    took = time.monotonic() - t0
    return p, int(re.search(r":(\d+)\s*$", line).group(1)), took


def get(port, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    t0 = time.monotonic()
    c.request("GET", path)
    r = c.getresponse()
    body = r.read()
    return time.monotonic() - t0, r.status, body


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("server")
    ap.add_argument("-n", type=int, default=100000)
    a = ap.parse_args()
    state = tempfile.mkdtemp(prefix="bench-restart-")
    try:
        p, port, _ = start(a.server, state, ["--retention-max-jobs", "0"]
                           if "retention" in subprocess.run([a.server, "--help"],
                                                            capture_output=True,
                                                            text=True).stdout else [])
        c = http.client.HTTPConnection("127.0.0.1", port)
        c.request("POST", "/v1/jobs", body=json.dumps({"volume": {"shape": [8, 8, 8]},
                                                       "params": {"duration_s": 0.1}}))
        jid = json.loads(c.getresponse().read())["job_id"]
        while True:
            _, _, body = get(port, "/v1/jobs/%s" % jid)
            if json.loads(body)["state"] == "completed":
                break
            time.sleep(0.05)
        p.terminate()
        p.wait(30)
        db = sqlite3.connect(os.path.join(state, "jobs.db"))
        rec = json.loads(db.execute("SELECT record FROM jobs").fetchone()[0])
        rows = []
        for i in range(a.n):
            new = uuid.uuid4()
            rec["job_id"] = str(new)
            ts = "2026-01-01T00:00:00.%06dZ" % (i % 1000000)
            rec["created_at"] = ts
            rows.append((str(new), json.dumps(rec)))
        db.executemany("INSERT INTO jobs(id, record) VALUES(?, ?)", rows)
        db.commit()
        db.close()
        extra = ["--retention-max-jobs", "0"] if "retention" in subprocess.run(
            [a.server, "--help"], capture_output=True, text=True).stdout else []
        p, port, took = start(a.server, state, extra)
        print("# %s with %d stored jobs" % (a.server, a.n + 1))
        print("start-up to listening: %.2f s" % took)
        times = [get(port, "/v1/jobs")[0] for _ in range(3)]
        print("GET /v1/jobs (default page): %.3f s median of 3" % sorted(times)[1])
        lat = []
        listing = threading.Thread(target=lambda: [get(port, "/v1/jobs") for _ in range(5)])
        listing.start()
        while listing.is_alive():
            lat.append(get(port, "/v1/healthz")[0])
        listing.join()
        print("GET /v1/healthz during 5 listings: max %.3f s over %d requests"
              % (max(lat) if lat else 0, len(lat)))
        p.terminate()
        p.wait(60)
    finally:
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
