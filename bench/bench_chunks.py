#!/usr/bin/python3
"""Chunked delta previews vs full frames (docs/protocol.md §11, issue 11),
side by side in ONE run on one server, on this machine:

1. Fan-out matrix. For the sim engine (a `blobs` job) and the classic engine
   (a `cryomamba phantom` uploaded with the CLI, then a volume job with engine
   classic), each at preview_scale 1, for N in --subs and each encoding
   (chunks at scale 1, full-frame zstd, full-frame base64): one fresh job,
   N subscribers of build/bench/loadgen (C; --encoding, --until-end: from the
   first connection until every subscriber has the terminal message), the
   bytes on the wire per subscriber and per second, the server's CPU per
   subscriber. Each cell also has one Python subscriber that checks the mask
   is byte-identical to the artifact: chunks reconstructs the whole stream
   live (tests/integration/chunk_client.py); zstd and base64 join after the
   end and decode the final preview.
2. Peers on one job of --long-hz x --long-duration previews (300 by default):
   a scale-1 chunks subscriber (per delta: its bytes incl. headers vs the
   compressed payloads of its chunks alone, chunks whose content did not
   change, arrival of the last chunk), a full-frame zstd subscriber (arrival
   and server timestamp of each preview) and a viewer-style subscriber
   (chunks at --view-scale with a `view` of three planes at full resolution).
   The same peers (chunks + zstd) on a classic job.
3. The fan-out floor: bench/run.py --quick --scenarios fanout-500 --servers
   cryomambad,floor (server CPU per GB of the base64 fan-out), beside the
   marginal CPU per GB of each encoding here.

    /usr/bin/python3 bench/bench_chunks.py [--shape 256 512 512] [--subs 1 100 500]
        [--hz 2] [--duration 20] [--long-hz 5] [--long-duration 60] [--no-floor]

Needs build/ (ninja -C build). Prints the tables and writes
bench/results/chunks-<time>.json and .txt."""

import argparse
import asyncio
import datetime
import glob
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BUILD = os.environ.get("BUILD", os.path.join(ROOT, "build"))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
os.environ.setdefault("CRYOMAMBA_SERVER_BIN", os.path.join(BUILD, "src", "server", "cryomambad"))

import numpy as np  # noqa: E402
import websockets  # noqa: E402
import zstandard  # noqa: E402

from chunk_client import EDGE, HEAD, ChunkClient, max_downsample  # noqa: E402
from harness import Server, read_mrc  # noqa: E402

LOADGEN = os.path.join(BUILD, "bench", "loadgen")
CLI = os.path.join(BUILD, "src", "cli", "cryomamba")
ENCODINGS = ("chunks", "zstd", "base64")
OUT = []  # every printed line, for the .txt


def say(text=""):
    print(text, flush=True)
    OUT.append(text)


def ws_header(n):
    """Bytes of a server (unmasked) WebSocket frame header for n payload bytes."""
    return 2 if n < 126 else 4 if n < 65536 else 10


def ts_us(text):
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp() * 1e6


def pct(v, p):
    if not v:
        return float("nan")
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


class CheckingClient(ChunkClient):
    """ChunkClient that also records, per delta seq, the bytes on the wire
    (text + chunk messages + WebSocket frame headers), the compressed payloads
    alone, chunks whose voxels did not change, and arrival times."""

    def __init__(self):
        super().__init__()
        self.per_seq = {}    # seq -> dict
        self.cur = None
        self.redundant = 0
        self.t_first = None

    def feed_at(self, raw, now):
        if self.t_first is None:
            self.t_first = now
        wire = len(raw) + ws_header(len(raw))
        if isinstance(raw, str) and raw.startswith('{"type":"delta"'):
            t = self.feed(raw)
            d = self.deltas[-1]
            rec = self.per_seq.setdefault(d["seq"], {
                "wire": 0, "payload": 0, "chunks": 0, "text": 0, "keyframe": d["keyframe"],
                "t_header": now, "t_done": None, "ts": ts_us(json.loads(raw)["timestamp"])})
            rec["wire"] += wire
            rec["text"] += wire
            self.cur = rec
            if self.pending == 0 and d["complete"]:
                rec["t_done"] = now
            return t
        if isinstance(raw, bytes) and self.cur is not None:
            self.cur["wire"] += wire
            self.cur["payload"] += len(raw) - HEAD.size
            self.cur["chunks"] += 1
        t = self.feed(raw)
        if t == "chunk" and self.pending == 0 and self.deltas[-1]["complete"]:
            self.cur["t_done"] = now
        return t

    def _chunk(self, raw):
        _, level, _, _, cz, cy, cx, _, _ = HEAD.unpack_from(raw)
        before = None
        if self.vol is not None:
            m = self.mask(level)
            sl = (slice(cz * EDGE, cz * EDGE + EDGE), slice(cy * EDGE, cy * EDGE + EDGE),
                  slice(cx * EDGE, cx * EDGE + EDGE))
            before = m[sl].copy()
        super()._chunk(raw)
        if before is not None and np.array_equal(before, self.mask(level)[sl]) \
                and not self.deltas[-1]["keyframe"]:
            self.redundant += 1


async def chunks_peer(url, view=None):
    c = CheckingClient()
    async with websockets.connect(url, max_size=None) as ws:
        async for raw in ws:
            now = time.time() * 1e6
            t = c.feed_at(raw, now)
            if t == "connected" and view is not None:
                await ws.send(json.dumps(dict(view, type="view")))
            if c.terminal is not None:
                break
    return c


async def zstd_peer(url):
    """Full-frame zstd subscriber: per seq arrival time, server timestamp and
    bytes; keeps the last payload to check it against the artifact."""
    per_seq = {}
    last = None
    total = 0
    async with websockets.connect(url, max_size=None) as ws:
        async for raw in ws:
            now = time.time() * 1e6
            total += len(raw) + ws_header(len(raw))
            if isinstance(raw, bytes):
                h = int.from_bytes(raw[:4], "big")
                env = json.loads(raw[4:4 + h])
                per_seq[env["seq"]] = {"t": now, "ts": ts_us(env["timestamp"]),
                                       "bytes": len(raw) + ws_header(len(raw)),
                                       "raw": env["data"].get("encoding") == "raw"}
                last = (env["data"], raw[4 + h:])
            elif '"type":"completed"' in raw[:100] or '"type":"error"' in raw[:100]:
                msg = json.loads(raw)
                if msg["seq"] != 0:
                    break
    return per_seq, last, total


def decode_frame(data, payload, shape):
    if data.get("encoding") == "zstd":
        payload = zstandard.ZstdDecompressor().decompress(payload, max_output_size=int(np.prod(shape)))
    return np.frombuffer(payload, np.uint8).reshape(shape)


async def late_check(srv, jid, enc, full):
    """Joins an ended job with a full-frame encoding: its final preview must
    be the artifact."""
    q = "?encoding=zstd" if enc == "zstd" else ""
    async with websockets.connect(srv.ws_url(jid) + q, max_size=None) as ws:
        async for raw in ws:
            if isinstance(raw, bytes):
                h = int.from_bytes(raw[:4], "big")
                env = json.loads(raw[4:4 + h])
                got = decode_frame(env["data"], raw[4 + h:], full.shape)
                break
            if raw.startswith('{"type":"preview"'):
                import base64
                msg = json.loads(raw)
                got = np.frombuffer(base64.b64decode(msg["data"]["payload"]),
                                    np.uint8).reshape(full.shape)
                break
    bad = int((got != full).sum())
    return "identical" if bad == 0 else "%d voxels differ" % bad


def artifact(srv, jid):
    return read_mrc(srv.get("/v1/jobs/%s/artifacts/mask.mrc" % jid, timeout=120).body)[1]


def wait_done(srv, jid, timeout=600):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        st = srv.job(jid)["state"]
        if st in ("completed", "failed", "cancelled"):
            return st
        time.sleep(0.05)
    raise AssertionError("job %s did not end" % jid)


def create(srv, engine, args, hz, duration):
    if engine == "sim":
        return srv.create_job({"volume": {"shape": args.shape}}, pattern="blobs", preview_hz=hz,
                              duration_s=duration, preview_scale=1, seed=args.seed)["job_id"]
    return srv.create_job({"volume_id": args.volume_id}, engine="classic", preview_hz=hz,
                          preview_scale=1)["job_id"]


async def run_cell(srv, engine, enc, n, args, tmp):
    hz = args.hz if engine == "sim" else args.classic_hz
    jid = create(srv, engine, args, hz, args.duration)
    url = srv.ws_url(jid)
    out = os.path.join(tmp, "lg-%s-%s-%d.json" % (engine, enc, n))
    cmd = [LOADGEN, "--url", url, "-n", str(n), "--encoding", enc, "--chunk-scale", "1",
           "--until-end", "--duration-s", str(args.duration + 300), "--hz", str(hz),
           "--ramp-per-s", "5000", "--server-pid", str(srv.proc.pid),
           "--label", "%s/%s/%d" % (engine, enc, n), "--json", out]
    lg = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE,
                                              stderr=asyncio.subprocess.PIPE)
    checker = None
    if enc == "chunks":
        checker = asyncio.ensure_future(chunks_peer(url + "?encoding=chunks&scale=1"))
    so, se = await lg.communicate()
    if lg.returncode != 0:
        raise AssertionError("loadgen exit %d: %s %s" % (lg.returncode, so.decode()[-800:],
                                                         se.decode()[-800:]))
    with open(out) as f:
        r = json.load(f)
    state = wait_done(srv, jid)
    full = artifact(srv, jid)
    if checker is not None:
        c = await checker
        bad = int((c.mask(0) != full).sum())
        ok = "live: identical" if bad == 0 else "live: %d voxels differ" % bad
    else:
        ok = "final: " + await late_check(srv, jid, enc, full)
    r["state"] = state
    r["check"] = ok
    r["previews_job"] = srv.job(jid).get("previews_sent")
    return r


async def peers(srv, engine, args, hz, duration):
    jid = create(srv, engine, args, hz, duration)
    base = srv.ws_url(jid)
    vz, vy, vx = (d // 2 for d in args.shape)
    view = {"z": vz, "y": vy, "x": vx, "zoom": 1.0}
    tasks = [chunks_peer(base + "?encoding=chunks&scale=1"), zstd_peer(base + "?encoding=zstd")]
    if engine == "sim":
        tasks.append(chunks_peer(base + "?encoding=chunks&scale=%d" % args.view_scale, view))
    cpu0 = cpu_s(srv.proc.pid)
    t0 = time.monotonic()
    res = await asyncio.gather(*tasks)
    wall = time.monotonic() - t0
    cpu = cpu_s(srv.proc.pid) - cpu0
    wait_done(srv, jid)
    full = artifact(srv, jid)
    job = srv.job(jid)
    return jid, res, full, wall, cpu, job


def cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


def matrix_table(engine, rows, args):
    hz = args.hz if engine == "sim" else args.classic_hz
    if engine == "sim":
        what = "sim blobs %s, seed %d, %.1f Hz for %.0f s" % (
            "x".join(map(str, args.shape)), args.seed, hz, args.duration)
    else:
        what = "classic on a phantom %s (noise 0.5, seed %d), %.1f Hz" % (
            "x".join(map(str, args.shape)), args.seed, hz)
    say("\n%s, preview_scale 1; per subscriber, from the first connection to the terminal "
        "message:" % what)
    say("| subs | encoding | window s | previews/client (job's) | bytes/sub | of which raw frames "
        "| bytes/s/sub | vs zstd (zstd frames only) | server CPU s | CPU ms/sub "
        "| marginal CPU s/GB | latency p50/p99 ms | check |")
    say("|" + "---|" * 13)
    for (n, enc), r in sorted(rows.items(), key=lambda kv: (kv[0][0], ENCODINGS.index(kv[0][1]))):
        per = r["bytes"] / max(1, r["established"])
        z = rows.get((n, "zstd"))
        ratio = ratio2 = float("nan")
        if z:
            zper = z["bytes"] / max(1, z["established"])
            zonly = (z["bytes"] - z.get("raw_bytes", 0)) / max(1, z["established"])
            ratio, ratio2 = per / zper, per / zonly
        raw = "-"
        if r.get("raw_previews"):
            raw = "%.1f (%.0f bytes)" % (r["raw_previews"] / max(1, r["established"]),
                                         r["raw_bytes"] / max(1, r["established"]))
        cpu = r["server"]["cpu_s"]
        one = rows.get((1, enc))
        marg = "-"
        if one is not None and n > 1 and r["bytes"] > one["bytes"]:
            marg = "%.3f" % ((cpu - one["server"]["cpu_s"]) / ((r["bytes"] - one["bytes"]) / 1e9))
        prev = r["deltas_complete"] if enc == "chunks" else r["latency_ms"]["samples"]
        say("| %d | %s | %.1f | %.1f (%s) | %.0f | %s | %.0f | %.4f (%.4f) | %.2f | %.2f | %s "
            "| %.1f / %.1f | %s |"
            % (n, enc, r["window_s"], prev / max(1, r["established"]), r.get("previews_job"),
               per, raw, per / max(r["window_s"], 1e-9), ratio, ratio2, cpu, cpu * 1000 / n, marg,
               r["latency_ms"]["p50"], r["latency_ms"]["p99"], r["check"]))


def report_peers(engine, res, full, wall, cpu, job, args):
    c, (zs, zlast, ztotal) = res[0], res[1]
    summary = {"engine": engine, "wall_s": wall, "server_cpu_s": cpu,
               "previews_sent": job.get("previews_sent")}
    say("\n%s: peers on one job (%s previews in %.1f s, server CPU %.2f s):"
        % (engine, job.get("previews_sent"), wall, cpu))
    bad = int((c.mask(0) != full).sum())
    data, payload = zlast
    zfull = decode_frame(data, payload, full.shape)
    zbad = int((zfull != full).sum())
    say("  masks at completion: chunks scale 1 %s; zstd final preview %s"
        % ("identical" if bad == 0 else "%d voxels differ" % bad,
           "identical" if zbad == 0 else "%d voxels differ" % zbad))
    deltas = {s: r for s, r in c.per_seq.items() if not r["keyframe"] and r["chunks"] > 0}
    key = {s: r for s, r in c.per_seq.items() if r["keyframe"]}
    ratios = [r["wire"] / r["payload"] for r in deltas.values() if r["payload"] > 0]
    big = [r["wire"] / r["payload"] for r in deltas.values() if r["payload"] >= 4096]
    tw = sum(r["wire"] for r in deltas.values())
    tp = sum(r["payload"] for r in deltas.values())
    over = sum(1 for x in ratios if x > 1.10)
    say("  per delta (not the keyframe; %d deltas with chunks, %d chunks with unchanged voxels):"
        % (len(deltas), c.redundant))
    say("    wire bytes (text + chunk messages + frame headers) / compressed payloads alone: "
        "p50 %.3f, p90 %.3f, max %.3f; all deltas together %.4f; %d of %d deltas over 1.10"
        % (pct(ratios, 50), pct(ratios, 90), max(ratios or [0]), tw / max(1, tp), over,
           len(ratios)))
    say("    deltas with >= 4 KiB of payload: p50 %.3f, max %.3f (%d deltas)"
        % (pct(big, 50), max(big or [0]), len(big)))
    kw = sum(r["wire"] for r in key.values())
    summary.update(delta_ratio_p50=pct(ratios, 50), delta_ratio_p90=pct(ratios, 90),
                   delta_ratio_max=max(ratios or [0]), delta_ratio_total=tw / max(1, tp),
                   deltas_over_110=over, deltas=len(ratios), redundant_chunks=c.redundant,
                   keyframe_wire=kw)
    raws = [p for p in zs.values() if p["raw"]]
    zonly = sum(p["bytes"] for p in zs.values() if not p["raw"])
    say("  totals over the job: chunks scale 1 %d bytes (keyframe %d), full frames %d bytes "
        "(%d previews, of which %d raw: %d bytes): chunks = %.3f %% of it, %.3f %% of the zstd "
        "frames alone (%d bytes)"
        % (c.wire_bytes, kw, ztotal, len(zs), len(raws), sum(p["bytes"] for p in raws),
           100 * c.wire_bytes / ztotal, 100 * c.wire_bytes / max(1, zonly), zonly))
    summary.update(chunks_bytes=c.wire_bytes, zstd_bytes=ztotal, zstd_previews=len(zs),
                   zstd_raw_frames=len(raws), zstd_only_bytes=zonly)
    # Latency: the delta of seq S complete at the chunks peer vs the zstd
    # preview of seq S at the zstd peer, and vs that preview's timestamp.
    dz, dts, zl, dh = [], [], [], []
    for s, r in c.per_seq.items():
        if r["t_done"] is None or s not in zs or r["keyframe"]:
            continue
        dz.append((r["t_done"] - zs[s]["t"]) / 1e3)
        dts.append((r["t_done"] - zs[s]["ts"]) / 1e3)
        dh.append((r["t_done"] - r["ts"]) / 1e3)
        zl.append((zs[s]["t"] - zs[s]["ts"]) / 1e3)
    say("  latency, ms (%d seqs seen by both): delta complete - zstd preview arrival p50 %.1f "
        "p90 %.1f min %.1f max %.1f" % (len(dz), pct(dz, 50), pct(dz, 90), min(dz or [0]),
                                        max(dz or [0])))
    say("    delta complete - preview timestamp p50 %.1f p90 %.1f max %.1f; zstd arrival - preview "
        "timestamp p50 %.1f p90 %.1f max %.1f; delta complete - delta header timestamp p50 %.1f"
        % (pct(dts, 50), pct(dts, 90), max(dts or [0]), pct(zl, 50), pct(zl, 90),
           max(zl or [0]), pct(dh, 50)))
    summary.update(lat_delta_minus_zstd_p50=pct(dz, 50), lat_delta_minus_zstd_p90=pct(dz, 90),
                   lat_delta_vs_ts_p50=pct(dts, 50), lat_delta_vs_ts_p90=pct(dts, 90),
                   lat_zstd_vs_ts_p50=pct(zl, 50), lat_zstd_vs_ts_p90=pct(zl, 90), seqs=len(dz))
    if len(res) > 2:
        v = res[2]
        lvl = args.view_scale.bit_length() - 1
        coarse_bad = int((v.mask(lvl) != max_downsample(full, lvl)).sum())
        vz, vy, vx = (d // 2 for d in full.shape)
        m0 = v.mask(0)
        plane_bad = int((m0[vz] != full[vz]).sum() + (m0[:, vy] != full[:, vy]).sum()
                        + (m0[:, :, vx] != full[:, :, vx]).sum())
        say("  viewer-style subscriber (scale %d everywhere, planes z=%d y=%d x=%d at scale 1, "
            "zoom 1): %d bytes = %.2f %% of chunks scale 1, %.3f %% of the zstd frames; coarse "
            "mask %s, the three planes %s" % (args.view_scale, vz, vy, vx, v.wire_bytes,
                                              100 * v.wire_bytes / c.wire_bytes,
                                              100 * v.wire_bytes / max(1, zonly),
                                     "identical" if coarse_bad == 0 else "%d differ" % coarse_bad,
                                     "identical" if plane_bad == 0 else "%d differ" % plane_bad))
        summary.update(view_bytes=v.wire_bytes, view_coarse_bad=coarse_bad,
                       view_plane_bad=plane_bad)
    summary.update(chunks_bad=bad, zstd_bad=zbad)
    return summary


def floor_run():
    """The fan-out floor, via the existing suite: returns its records."""
    before = set(glob.glob(os.path.join(ROOT, "bench", "results", "quick-*.json")))
    p = subprocess.run(["/usr/bin/python3", os.path.join(HERE, "run.py"), "--quick",
                        "--scenarios", "fanout-500", "--servers", "cryomambad,floor"],
                       capture_output=True, text=True, cwd=ROOT)
    new = sorted(set(glob.glob(os.path.join(ROOT, "bench", "results", "quick-*.json"))) - before)
    if p.returncode != 0 or not new:
        say("  run.py failed: %s" % p.stderr[-500:])
        return None, None
    with open(new[-1]) as f:
        rec = json.load(f)
    return rec, new[-1]


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", type=int, nargs=3, default=[256, 512, 512])
    ap.add_argument("--subs", type=int, nargs="+", default=[1, 100, 500])
    ap.add_argument("--engines", default="sim,classic")
    ap.add_argument("--hz", type=float, default=2.0)
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--classic-hz", type=float, default=4.0)
    ap.add_argument("--long-hz", type=float, default=5.0)
    ap.add_argument("--long-duration", type=float, default=60.0)
    ap.add_argument("--view-scale", type=int, default=4)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-floor", action="store_true")
    ap.add_argument("--skip", default="classic/base64/500",
                    help="engine/encoding/subs cells not run, comma-separated (the default one "
                    "alone takes ~110 s: the final 89 MB frame to 500 subscribers)")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    t_start = time.monotonic()
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    commit = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"],
                            capture_output=True, text=True).stdout.strip()
    say("$ /usr/bin/python3 bench/bench_chunks.py %s" % " ".join(sys.argv[1:]))
    say("commit %s, %s, %d CPUs, load average before: %s"
        % (commit, stamp, os.cpu_count(), loadavg()))
    results = {"argv": sys.argv[1:], "commit": commit, "started": stamp,
               "loadavg_before": loadavg(), "matrix": {}, "peers": {}}
    srv = Server(["--log-level", "warn", "--max-running", "1", "--max-connections", "30000",
                  "--max-subscribers-per-job", "20000", "--max-connections-per-ip", "0",
                  "--ws-ping-interval", "600", "--max-held-bytes", str(8 << 30)]).start()
    tmp = tempfile.mkdtemp(prefix="bench-chunks-")
    try:
        engines = args.engines.split(",")
        if "classic" in engines:
            vol = os.path.join(tmp, "phantom.mrc")
            subprocess.run([CLI, "phantom", "--shape", ",".join(map(str, args.shape)), "--seed",
                            str(args.seed), "--noise", "0.5", "-o", vol], check=True,
                           capture_output=True)
            up = subprocess.run([CLI, "--server", srv.base, "--json", "upload", vol,
                                 "--no-progress"], check=True, capture_output=True, text=True)
            args.volume_id = json.loads(up.stdout)["volume_id"]
            os.unlink(vol)
        for engine in engines:
            rows = {}
            for n in args.subs:
                for enc in ENCODINGS:
                    if "%s/%s/%d" % (engine, enc, n) in args.skip.split(","):
                        continue
                    rows[(n, enc)] = await run_cell(srv, engine, enc, n, args, tmp)
                    sys.stderr.write("  %s %s %d done (%.0f s)\n"
                                     % (engine, enc, n, time.monotonic() - t_start))
            matrix_table(engine, rows, args)
            results["matrix"][engine] = {"%d/%s" % k: v for k, v in rows.items()}
        for engine in engines:
            hz = args.long_hz if engine == "sim" else args.classic_hz
            jid, res, full, wall, cpu, job = await peers(srv, engine, args, hz, args.long_duration)
            results["peers"][engine] = report_peers(engine, res, full, wall, cpu, job, args)
    finally:
        srv.stop()
        srv.cleanup()
    if not args.no_floor:
        say("\nfan-out floor (bench/run.py --quick --scenarios fanout-500 --servers "
            "cryomambad,floor: 500 subscribers, 64x128x128 base64 at 1 Hz, 8 s; server on core 0, "
            "loadgen on core 1):")
        rec, path = floor_run()
        if rec is not None:
            for r in rec["records"]:
                s = r.get("result", {}).get("server", {})
                say("  %s: %.3f s/GB (%.1f MB/s)" % (r["server"], s.get("cpu_s_per_gb", -1),
                                                     r.get("result", {}).get("mb_per_s", -1)))
            results["floor"] = {"file": os.path.relpath(path, ROOT),
                                "records": [{"server": r["server"],
                                             "cpu_s_per_gb": r.get("result", {}).get(
                                                 "server", {}).get("cpu_s_per_gb")}
                                            for r in rec["records"]]}
    say("\nwhole run %.0f s; load average after: %s" % (time.monotonic() - t_start, loadavg()))
    results["elapsed_s"] = time.monotonic() - t_start
    base = os.path.join(ROOT, "bench", "results", "chunks-%s" % stamp)
    with open(base + ".json", "w") as f:
        json.dump(results, f, indent=1, default=str)
    with open(base + ".txt", "w") as f:
        f.write("\n".join(OUT) + "\n")
    print("results: %s.json, %s.txt" % (base, base))


if __name__ == "__main__":
    asyncio.run(main())
