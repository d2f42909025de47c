#!/usr/bin/python3
"""run.py: the benchmark suite (issue 5). For each scenario and each server
(cryomambad, the floor, Node ws, the Python reference design) it starts a
fresh server pinned to core 0 (taskset -c 0), runs build/bench/loadgen pinned
to core 1 against it (the load generator reads the server's CPU and memory
from /proc itself), prints one table and writes bench/results/<mode>-<time>.json.

    bash bench/run.sh [--quick] [--servers cryomambad,floor,node,python]
                      [--scenarios idle,fanout,...] [--timing-s S]

Full mode takes about an hour; --quick (small N, short windows) a few
minutes. Needs build/ built (ninja -C build) and, for the peers,
`bash scripts/bootstrap --bench`. Run it on an otherwise idle machine.
"""
import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("BUILD", os.path.join(ROOT, "build"))
LOADGEN = os.path.join(BUILD, "bench", "loadgen")
SERVER_CORE = "0"
LOADGEN_CORE = "1"

FANOUT = "64,128,128"   # 1 MiB preview, ~1.4 MB as base64
BIG = "128,256,256"     # 8 MiB preview, ~11.2 MB as base64
IDLE = "8,8,8"          # 512-byte preview every 10 s: connections only
MANY = "32,64,64"       # 128 KiB preview per job


def scenarios(quick, timing_s):
    """(name, group, loadgen arguments). Durations are the measured window."""
    d = 8 if quick else 30
    s = []
    for n in ([1000] if quick else [1000, 5000, 10000]):
        s.append(("idle-%d" % n, "idle",
                  ["-n", n, "--shape", IDLE, "--hz", 0.1, "--ramp-per-s",
                   1000, "--warmup-s", 2, "--duration-s", 3]))
    for n in ([10, 100, 500] if quick else [10, 100, 500, 1000]):
        s.append(("fanout-%d" % n, "fanout",
                  ["-n", n, "--shape", FANOUT, "--hz", 1, "--ramp-per-s",
                   500, "--warmup-s", 3, "--duration-s", d]))
    s.append(("big-20", "big",
              ["-n", 20, "--shape", BIG, "--hz", 1, "--warmup-s", 3,
               "--duration-s", d]))
    s.append(("timing-1", "timing",
              ["-n", 1, "--shape", FANOUT, "--hz", 1, "--warmup-s", 2,
               "--duration-s", timing_s or (10 if quick else 60)]))
    s.append(("slow-10+1", "slow",
              ["-n", 11, "--stall", 1, "--shape", FANOUT, "--hz", 1,
               "--warmup-s", 3, "--duration-s", 10 if quick else 60]))
    jobs, per = (10, 10) if quick else (100, 10)
    s.append(("jobs-%dx%d" % (jobs, per), "jobs",
              ["-n", jobs * per, "--jobs", jobs, "--shape", MANY, "--hz", 1,
               "--ramp-per-s", 500, "--warmup-s", 3, "--duration-s", d]))
    return s


def server_cmd(name, state_dir):
    if name == "cryomambad":
        return [os.path.join(BUILD, "src", "server", "cryomambad"),
                "--port", "0", "--state-dir", state_dir, "--log-level",
                "warn", "--max-connections", "30000",
                "--max-subscribers-per-job", "20000", "--max-running",
                "1000", "--ws-ping-interval", "600",
                "--max-connections-per-ip", "0"]
    if name == "floor":
        return [os.path.join(BUILD, "bench", "floor"), "--port", "0"]
    if name == "node":
        return ["node", os.path.join(ROOT, "bench", "peers", "node_ws.mjs"),
                "--port", "0"]
    if name == "python":
        return ["/usr/bin/python3",
                os.path.join(ROOT, "bench", "peers", "reference_fastapi.py"),
                "--port", "0"]
    raise ValueError(name)


def wait_port(port, timeout_s=15):
    end = time.time() + timeout_s
    while time.time() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), 0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


def start_server(name, state_dir, log):
    cmd = ["taskset", "-c", SERVER_CORE] + server_cmd(name, state_dir)
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True,
                         cwd=ROOT)
    line = p.stdout.readline()
    if "listening on http://" not in line:
        p.kill()
        raise RuntimeError("%s did not start: %r" % (name, line))
    port = int(line.strip().rsplit(":", 1)[1])
    if not wait_port(port):
        p.kill()
        raise RuntimeError("%s does not accept connections" % name)
    return p, port


def stop_server(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def loadavg():
    with open("/proc/loadavg") as f:
        return f.read().split()[:3]


def run_one(server, scen, out_dir, log):
    name, group, args = scen
    state_dir = tempfile.mkdtemp(prefix="cm-bench-")
    rec = {"server": server, "scenario": name, "group": group,
           "loadavg_before": loadavg()}
    try:
        p, port = start_server(server, state_dir, log)
    except RuntimeError as e:
        rec["error"] = str(e)
        shutil.rmtree(state_dir, ignore_errors=True)
        return rec
    jpath = os.path.join(out_dir, "%s-%s.json" % (name, server))
    cmd = (["taskset", "-c", LOADGEN_CORE, LOADGEN, "--server",
            "http://127.0.0.1:%d" % port, "--server-pid", str(p.pid),
            "--label", "%s/%s" % (name, server), "--json", jpath] +
           [str(a) for a in args])
    t0 = time.time()
    lg = subprocess.run(cmd, capture_output=True, text=True)
    rec["elapsed_s"] = round(time.time() - t0, 1)
    rec["loadgen_stdout"] = lg.stdout
    if lg.returncode != 0:
        rec["error"] = "loadgen exit %d: %s" % (lg.returncode,
                                                lg.stderr[-500:])
    if p.poll() is not None:
        rec["error"] = "server exited with %s" % p.returncode
    stop_server(p)
    shutil.rmtree(state_dir, ignore_errors=True)
    if os.path.exists(jpath):
        with open(jpath) as f:
            rec["result"] = json.load(f)
    rec["loadavg_after"] = loadavg()
    sys.stderr.write(lg.stdout)
    return rec


def fmt(v, spec="%.2f"):
    return "-" if v is None else spec % v


def table(records):
    floor = {r["scenario"]: r["result"] for r in records
             if r["server"] == "floor" and "result" in r}
    head = ("| scenario | server | conn ok/fail | previews/s per client "
            "(min) | MB/s | latency p50 / p99 / max ms | jitter p99 ms | "
            "drift ms | server CPU s/GB | × floor | RSS MiB start→end (peak) | "
            "KiB/conn | connect p99 ms | loadgen CPU % |")
    lines = [head, "|" + "---|" * 14]
    for r in records:
        if "result" not in r:
            lines.append("| %s | %s | %s |" % (r["scenario"], r["server"],
                                               r.get("error", "no result")))
            continue
        x = r["result"]
        s = x.get("server", {})
        gbcost = s.get("cpu_s_per_gb") if x["bytes"] > 1e8 else None
        f = floor.get(r["scenario"], {}).get("server", {})
        ratio = (gbcost / f["cpu_s_per_gb"]
                 if gbcost and f.get("cpu_s_per_gb") else None)
        lat = x["latency_ms"]
        pps = x["previews_per_s"]
        lines.append(
            "| %s | %s | %d/%d | %.3f (%.3f) | %.1f | %.1f / %.1f / %.1f | "
            "%.2f | %.2f | %s | %s | %.1f→%.1f (%.1f) | %s | %.2f | %.0f |" % (
                r["scenario"], r["server"], x["established"], x["failed"],
                pps["mean"], pps["min"], x["mb_per_s"], lat["p50"],
                lat["p99"], lat["max"], x["jitter_ms"]["p99"],
                x["drift_ms"], fmt(gbcost, "%.3f"), fmt(ratio),
                s.get("rss_kib_start", 0) / 1024,
                s.get("rss_kib_end", 0) / 1024, s.get("hwm_kib", 0) / 1024,
                fmt(s.get("rss_kib_per_conn"), "%.2f")
                if r["group"] == "idle" else "-",
                x["connect_ms"]["p99"],
                100 * x["loadgen_cpu_s"] / max(x["window_s"], 1e-9)))
        if r.get("error"):
            lines.append("| | | error: %s |" % r["error"].replace("\n", " "))
    return "\n".join(lines)


def machine():
    info = {"uname": platform.uname()._asdict(), "nproc": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            info["mem_total"] = f.readline().split(":", 1)[1].strip()
    except OSError:
        pass
    for tool, args in (("node", ["--version"]),
                       ("/usr/bin/python3", ["--version"])):
        try:
            info[os.path.basename(tool)] = subprocess.run(
                [tool] + args, capture_output=True, text=True).stdout.strip()
        except OSError:
            pass
    return info


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--servers", default="cryomambad,floor,node,python")
    ap.add_argument("--scenarios", default="",
                    help="comma-separated groups or names (default: all)")
    ap.add_argument("--timing-s", type=float, default=0,
                    help="window of the timing scenario (60; 600 = 10 min)")
    a = ap.parse_args()
    if not os.access(LOADGEN, os.X_OK):
        sys.exit("run.py: %s missing; run `ninja -C build` first" % LOADGEN)
    mode = "quick" if a.quick else "full"
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out_dir = os.path.join(ROOT, "bench", "results", "%s-%s" % (mode, stamp))
    os.makedirs(out_dir, exist_ok=True)
    want = set(filter(None, a.scenarios.split(",")))
    records = []
    log = open(os.path.join(out_dir, "servers.log"), "w")
    for scen in scenarios(a.quick, a.timing_s):
        if want and scen[0] not in want and scen[1] not in want:
            continue
        for server in a.servers.split(","):
            sys.stderr.write("== %s / %s\n" % (scen[0], server))
            records.append(run_one(server, scen, out_dir, log))
    log.close()
    text = table(records)
    print(text)
    summary = {"mode": mode, "started": stamp, "machine": machine(),
               "server_core": SERVER_CORE, "loadgen_core": LOADGEN_CORE,
               "records": records, "table": text}
    path = os.path.join(ROOT, "bench", "results", "%s-%s.json" % (mode, stamp))
    with open(path, "w") as f:
        json.dump(summary, f, indent=1)
    print("\nresults: %s (per-run JSON in %s)" % (path, out_dir))


if __name__ == "__main__":
    main()
