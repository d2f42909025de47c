#!/usr/bin/python3
"""classic_server.py: the classic engine end to end through the server, to
set beside bench_classic (the library alone). For each size: a phantom
(`cryomamba phantom`, noise 0.5, seed 1), a fresh cryomambad, the phantom
uploaded with the CLI (not timed), then a classic job created over REST and
polled until completed: the time from the create's answer to `completed`
(and the server's own started_at -> finished_at), the engine's stats
(open, windows, final pass), and the server's memory sampled every 20 ms
(/proc/PID/status: VmRSS, RssAnon, RssFile, RssShmem; the peaks). Then the
Dice per label against the phantom's truth (a sim blobs job).

  /usr/bin/python3 bench/classic_server.py [--build build] [--sizes 256,512]
      [--workers N] [--window W] [--scale S] [--hz HZ] [--tmp DIR]
"""

import argparse
import datetime
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time


def ts(text):
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()


class Srv:
    def __init__(self, build, tmp, args):
        self.state = os.path.join(tmp, "state")
        os.makedirs(self.state)
        self.proc = subprocess.Popen(
            [os.path.join(build, "src/server/cryomambad"), "--port", "0", "--state-dir",
             self.state, "--log-level", "warn"] + args,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        line = self.proc.stdout.readline().decode()
        m = re.match(r"listening on http://127\.0\.0\.1:(\d+)", line)
        if not m:
            raise SystemExit("the server did not start: %r" % line)
        self.port = int(m.group(1))
        self.base = "http://127.0.0.1:%d" % self.port

    def req(self, method, path, body=None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        c.request(method, path, body=json.dumps(body) if body is not None else None,
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, data

    def job(self, job_id):
        return json.loads(self.req("GET", "/v1/jobs/%s" % job_id)[1])

    def memory(self):
        out = {}
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                k = line.split(":")[0]
                if k in ("VmRSS", "RssAnon", "RssFile", "RssShmem", "VmHWM"):
                    out[k] = int(line.split()[1]) // 1024  # MiB
        return out

    def stop(self):
        self.proc.terminate()
        self.proc.wait(60)


def run_job(srv, body):
    peaks = {}
    done = threading.Event()

    def sample():
        while not done.is_set():
            for k, v in srv.memory().items():
                peaks[k] = max(peaks.get(k, 0), v)
            time.sleep(0.02)
    before = srv.memory()
    t = threading.Thread(target=sample)
    t.start()
    status, data = srv.req("POST", "/v1/jobs", body)
    t0 = time.monotonic()
    assert status == 201, data
    job_id = json.loads(data)["job_id"]
    while True:
        job = srv.job(job_id)
        if job["state"] in ("completed", "failed", "cancelled"):
            break
        time.sleep(0.02)
    wall = time.monotonic() - t0
    done.set()
    t.join()
    assert job["state"] == "completed", job
    return job, wall, before, peaks


def dice(a, b, label):
    x, y = a == label, b == label
    return 2.0 * float((x & y).sum()) / max(1.0, float(x.sum() + y.sum()))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--sizes", default="256,512")
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--window", type=int, default=0)
    ap.add_argument("--scale", type=int, default=1, help="preview_scale")
    ap.add_argument("--hz", type=float, default=1.0, help="preview_hz")
    ap.add_argument("--tmp", default=None)
    a = ap.parse_args()
    cli = os.path.join(a.build, "src/cli/cryomamba")
    for n in [int(x) for x in a.sizes.split(",")]:
        tmp = tempfile.mkdtemp(prefix="bench-classic-", dir=a.tmp)
        try:
            vol = os.path.join(tmp, "ph.mrc")
            subprocess.run([cli, "phantom", "--shape", "%d,%d,%d" % (n, n, n), "--seed", "1",
                            "--noise", "0.5", "-o", vol], check=True, capture_output=True)
            srv = Srv(a.build, tmp, ["--classic-workers", str(a.workers)] if a.workers else [])
            try:
                up = subprocess.run([cli, "--server", srv.base, "--json", "upload", vol,
                                     "--no-progress"], check=True, capture_output=True, text=True)
                vid = json.loads(up.stdout)["volume_id"]
                params = {"engine": "classic", "preview_scale": a.scale, "preview_hz": a.hz}
                if a.window:
                    params["engine_params"] = {"window": a.window}
                job, wall, before, peaks = run_job(srv, {"volume_id": vid, "params": params})
                eng = job["stats"]["engine"]
                server_s = ts(job["finished_at"]) - ts(job["started_at"])
                print("%d^3 (preview_scale %d, %g Hz): created->completed %.2f s (server: started->finished %.2f s); "
                      "engine: open %.2f s, windows %.2f s, final pass %.2f s; %d windows of %d, "
                      "%d workers, %.0f MiB scratch each"
                      % (n, a.scale, a.hz, wall, server_s, eng["seconds"]["open"], eng["seconds"]["windows"],
                         eng["seconds"]["final_pass"], eng["windows"], eng["window"],
                         eng["workers"], eng["scratch_bytes_per_worker"] / 2 ** 20))
                print("   memory MiB before: %s; peaks during: %s" % (before, peaks))
                try:
                    import mrcfile  # noqa: F401
                    import numpy as np
                    truth_job, _, _, _ = run_job(srv, {"volume": {"shape": [n, n, n]},
                                                       "params": {"pattern": "blobs", "seed": 1,
                                                                  "duration_s": 0}})
                    masks = []
                    for j in (job, truth_job):
                        _, body = srv.req("GET", "/v1/jobs/%s/artifacts/mask.mrc" % j["job_id"])
                        masks.append(np.frombuffer(body[1024:], np.uint8))
                    print("   Dice membrane %.3f, particle %.3f"
                          % (dice(masks[0], masks[1], 1), dice(masks[0], masks[1], 2)))
                except ImportError:
                    pass
            finally:
                srv.stop()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        sys.stdout.flush()


if __name__ == "__main__":
    main()
