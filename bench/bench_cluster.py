#!/usr/bin/python3
"""bench_cluster.py: fan-out across 1, 2 and 3 gateways against the single
process (issue 12; docs/performance.md "Cluster").

One sim job, N subscribers in all. The single process (--role all) serves
them alone; a cluster (Debian's redis-server, one worker, G gateways) has
them spread evenly over its G gateways, each gateway's share driven by its
own build/bench/loadgen with --server-pid on that gateway. Per
configuration it prints: the delivery rate (previews/s per subscriber
against the job's), the bytes delivered, each process's CPU over the
window, the CPU per GB per gateway (the figure that must stay near the
single process's: a gateway fans out exactly as --role all does), the
worker's and Redis's CPU (what the cluster adds, once per job rather than
per subscriber) and the end-to-end latency (worker clock to client; the
difference to the single process is what Redis adds: the worker's publish,
Redis, the gateway's subscriber connection). The floor (bench/floor.c: the
same frames from memory, no job) is measured in the same run at the same N.

    /usr/bin/python3 bench/bench_cluster.py [--subs 300] [--gateways 1,2,3]
        [--shape 64,128,128] [--hz 2] [--duration-s 10] [--encoding base64]

Servers run on core 0, load generators on core 1 (taskset), as bench/run.py.
Needs build/ (ninja -C build) and redis-server (scripts/bootstrap).
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as bench_run  # noqa: E402  (server_cmd, start_server, LOADGEN)

ROOT = bench_run.ROOT
SERVER = os.path.join(bench_run.BUILD, "src", "server", "cryomambad")
REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd, log):
    p = subprocess.Popen(["taskset", "-c", bench_run.SERVER_CORE] + cmd,
                         stdout=subprocess.PIPE, stderr=log, text=True, cwd=ROOT)
    line = p.stdout.readline()
    if "listening on http://" not in line:
        p.kill()
        raise RuntimeError("did not start: %r %r" % (cmd, line))
    return p, int(line.strip().rsplit(":", 1)[1])


def stop(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def server_args(state):
    return [SERVER, "--port", "0", "--state-dir", state, "--log-level", "warn",
            "--max-connections", "30000", "--max-subscribers-per-job", "20000",
            "--ws-ping-interval", "600", "--max-connections-per-ip", "0"]


def create_job(port, args):
    z, y, x = [int(v) for v in args.shape.split(",")]
    body = {"volume": {"shape": [z, y, x]},
            "params": {"engine": "sim", "preview_hz": args.hz,
                       "duration_s": args.duration_s + 60, "pattern": "blobs",
                       "preview_scale": 1}}
    rq = urllib.request.Request("http://127.0.0.1:%d/v1/jobs" % port,
                                data=json.dumps(body).encode(), method="POST",
                                headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(rq, timeout=10) as r:
        return json.load(r)["job_id"]


def loadgens(targets, args, tmp, tag):
    """targets: [(url_args, n, pid)]; runs them at once, returns results."""
    procs = []
    for i, (url_args, n, pid) in enumerate(targets):
        path = os.path.join(tmp, "%s-%d.json" % (tag, i))
        cmd = (["taskset", "-c", bench_run.LOADGEN_CORE, bench_run.LOADGEN] + url_args +
               ["-n", str(n), "--hz", str(args.hz), "--shape", args.shape,
                "--ramp-per-s", "500", "--warmup-s", "3",
                "--duration-s", str(args.duration_s), "--label", "%s/%d" % (tag, i),
                "--json", path, "--encoding", args.encoding] +
               (["--server-pid", str(pid)] if pid else []))
        procs.append((subprocess.Popen(cmd, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True), path))
    out = []
    for p, path in procs:
        so, se = p.communicate(timeout=args.duration_s + 300)
        if p.returncode != 0:
            raise RuntimeError("loadgen failed: %s %s" % (so[-400:], se[-400:]))
        with open(path) as f:
            out.append(json.load(f))
    return out


def summarise(name, results, extra_cpu):
    n = sum(r["n"] for r in results)
    established = sum(r["established"] for r in results)
    rate = min(r["previews_per_s"]["min"] for r in results)
    mean = sum(r["previews_per_s"]["mean"] * r["n"] for r in results) / max(n, 1)
    gb = sum(r["bytes"] for r in results) / 1e9
    gw_cpu = [r["server"]["cpu_s"] for r in results if "server" in r]
    per_gb = [r["server"]["cpu_s_per_gb"] for r in results if "server" in r]
    lat50 = max(r["latency_ms"]["p50"] for r in results)
    lat99 = max(r["latency_ms"]["p99"] for r in results)
    window = max(r["window_s"] for r in results)
    return {"config": name, "subs": n, "established": established,
            "rate_mean": mean, "rate_min": rate, "expected": results[0]["hz"],
            "gb": gb, "window_s": window, "fanout_cpu_s": gw_cpu,
            "cpu_s_per_gb": per_gb, "latency_p50_ms": lat50,
            "latency_p99_ms": lat99, **extra_cpu}


def run_single(args, tmp, log):
    state = tempfile.mkdtemp(dir=tmp)
    p, port = start(server_args(state) + ["--max-running", "4"], log)
    try:
        jid = create_job(port, args)
        res = loadgens([(["--url", "ws://127.0.0.1:%d/ws/jobs/%s" % (port, jid)],
                         args.subs, p.pid)], args, tmp, "single")
        return summarise("single process", res, {})
    finally:
        stop(p)


def run_floor(args, tmp, log):
    p, port = start([os.path.join(bench_run.BUILD, "bench", "floor"), "--port", "0"], log)
    try:
        res = loadgens([(["--server", "http://127.0.0.1:%d" % port], args.subs, p.pid)],
                       args, tmp, "floor")
        return summarise("floor", res, {})
    finally:
        stop(p)


def run_cluster(g, args, tmp, log):
    rdir = tempfile.mkdtemp(dir=tmp)
    rport = free_port()
    redis = subprocess.Popen(
        ["taskset", "-c", bench_run.SERVER_CORE, REDIS, "--port", str(rport),
         "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", rdir,
         "--loglevel", "warning"], stdout=subprocess.DEVNULL, stderr=log)
    url = "redis://127.0.0.1:%d" % rport
    procs = []
    try:
        deadline = time.time() + 10
        while subprocess.run(["redis-cli", "-p", str(rport), "PING"],
                             capture_output=True).stdout.strip() != b"PONG":
            if time.time() > deadline:
                raise RuntimeError("redis did not start")
            time.sleep(0.05)
        gws = []
        for _ in range(g):
            gws.append(start(server_args(tempfile.mkdtemp(dir=tmp)) +
                             ["--role", "gateway", "--redis", url], log))
        procs += [p for p, _ in gws]
        w, _ = start(server_args(tempfile.mkdtemp(dir=tmp)) +
                     ["--role", "worker", "--redis", url, "--max-running", "4"], log)
        procs.append(w)
        jid = create_job(gws[0][1], args)
        share = [args.subs // g + (1 if i < args.subs % g else 0) for i in range(g)]
        c0 = {"worker": cpu_s(w.pid), "redis": cpu_s(redis.pid)}
        t0 = time.time()
        res = loadgens([(["--url", "ws://127.0.0.1:%d/ws/jobs/%s" % (port, jid)],
                         share[i], p.pid) for i, (p, port) in enumerate(gws)],
                       args, tmp, "cluster%d" % g)
        wall = time.time() - t0
        extra = {"worker_cpu_pct": 100 * (cpu_s(w.pid) - c0["worker"]) / wall,
                 "redis_cpu_pct": 100 * (cpu_s(redis.pid) - c0["redis"]) / wall}
        return summarise("%d gateway%s" % (g, "s" if g > 1 else ""), res, extra)
    finally:
        for p in procs:
            stop(p)
        redis.kill()
        redis.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--subs", type=int, default=300)
    ap.add_argument("--gateways", default="1,2,3")
    ap.add_argument("--shape", default=bench_run.FANOUT)
    ap.add_argument("--hz", type=float, default=2)
    ap.add_argument("--duration-s", type=int, default=10)
    ap.add_argument("--encoding", default="base64")
    ap.add_argument("--no-floor", action="store_true")
    ap.add_argument("--json", help="write the rows here")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="cm-bench-cluster-")
    log = open(os.path.join(tmp, "servers.log"), "w")
    rows = []
    try:
        if not args.no_floor:
            rows.append(run_floor(args, tmp, log))
        rows.append(run_single(args, tmp, log))
        for g in [int(v) for v in args.gateways.split(",")]:
            rows.append(run_cluster(g, args, tmp, log))
    finally:
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)
    print("\nfan-out of one %s job at %g Hz, %d subscribers, encoding %s, window %d s"
          % (args.shape, args.hz, args.subs, args.encoding, args.duration_s))
    print("| config | connected | previews/s mean (min) / expected | GB | fan-out CPU s "
          "(per process) | CPU s/GB (per process) | worker CPU % | redis CPU % | "
          "latency p50 / p99 ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print("| %s | %d/%d | %.3f (%.3f) / %g | %.2f | %s | %s | %s | %s | %.1f / %.1f |" % (
            r["config"], r["established"], r["subs"], r["rate_mean"], r["rate_min"],
            r["expected"], r["gb"], " + ".join("%.2f" % v for v in r["fanout_cpu_s"]),
            " / ".join("%.3f" % v for v in r["cpu_s_per_gb"]),
            "%.1f" % r["worker_cpu_pct"] if "worker_cpu_pct" in r else "-",
            "%.1f" % r["redis_cpu_pct"] if "redis_cpu_pct" in r else "-",
            r["latency_p50_ms"], r["latency_p99_ms"]))
    print("\ncommand: /usr/bin/python3 bench/bench_cluster.py " + " ".join(sys.argv[1:]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
