#!/usr/bin/env python3
"""Chunked delta previews vs full frames (docs/protocol.md §11), in one run
on this machine: one `blobs` job per encoding (same shape, seed, rate and
duration), N subscribers each, bytes on the wire per subscriber and the
server's CPU time per subscriber. Every chunks subscriber's reconstruction
is checked against the artifact at the end.

    /usr/bin/python3 bench/bench_chunks.py [--shape 256 512 512] [--subs 1 100]
        [--hz 2] [--duration 20]

Needs a built server (build/src/server/cryomambad)."""

import argparse
import asyncio
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
os.environ.setdefault("CRYOMAMBA_SERVER_BIN",
                      os.path.join(HERE, "..", "build", "src", "server", "cryomambad"))

import websockets  # noqa: E402

from chunk_client import ChunkClient, max_downsample  # noqa: E402
from harness import Server, read_mrc  # noqa: E402


def cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


async def subscriber(url, chunks):
    c = ChunkClient() if chunks else None
    total = 0
    async with websockets.connect(url, max_size=None) as ws:
        async for raw in ws:
            total += len(raw)
            if c is not None:
                c.feed(raw)
                if c.terminal is not None:
                    break
            elif isinstance(raw, str) and '"type":"completed"' in raw[:200]:
                break
    return total, c


async def run_one(srv, enc, args, n):
    job = srv.create_job({"volume": {"shape": args.shape}}, pattern="blobs",
                         preview_hz=args.hz, duration_s=args.duration,
                         preview_scale=1, seed=3)
    jid = job["job_id"]
    q = {"base64": "", "zstd": "?encoding=zstd", "chunks": "?encoding=chunks&scale=1"}[enc]
    c0 = cpu_s(srv.proc.pid)
    t0 = time.monotonic()
    res = await asyncio.gather(*[subscriber(srv.ws_url(jid) + q, enc == "chunks")
                                 for _ in range(n)])
    wall = time.monotonic() - t0
    cpu = cpu_s(srv.proc.pid) - c0
    ok = ""
    if enc == "chunks":
        r = srv.get("/v1/jobs/%s/artifacts/mask.mrc" % jid)
        full = read_mrc(r.body)[1]
        want = max_downsample(full, 0)
        bad = sum(int((c.mask(0) != want).sum()) for _, c in res)
        ok = "identical" if bad == 0 else "%d voxels differ" % bad
    per_sub = sum(b for b, _ in res) / n
    return per_sub, wall, cpu, ok


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", type=int, nargs=3, default=[256, 512, 512])
    ap.add_argument("--subs", type=int, nargs="+", default=[1, 100])
    ap.add_argument("--hz", type=float, default=2.0)
    ap.add_argument("--duration", type=float, default=20.0)
    args = ap.parse_args()
    srv = Server(["--max-running", "1", "--max-held-bytes", str(8 << 30)]).start()
    try:
        print("blobs %s at scale 1, %.1f Hz for %.0f s (%d previews); per subscriber:"
              % ("x".join(map(str, args.shape)), args.hz, args.duration,
                 int(args.hz * args.duration)))
        print("%5s %-7s %14s %12s %12s %10s  %s" % ("subs", "enc", "bytes", "bytes/s",
                                                   "vs zstd", "cpu ms", "mask"))
        for n in args.subs:
            rows = {}
            for enc in ("zstd", "chunks", "base64"):
                if enc == "base64" and n > 1 and args.shape[0] * args.shape[1] * args.shape[2] > 1 << 24:
                    continue  # 180 MB per preview per subscriber: not on this VM
                rows[enc] = await run_one(srv, enc, args, n)
            for enc, (b, wall, cpu, ok) in rows.items():
                ratio = b / rows["zstd"][0] if "zstd" in rows else float("nan")
                print("%5d %-7s %14.0f %12.0f %11.4fx %10.2f  %s"
                      % (n, enc, b, b / wall, ratio, cpu * 1000 / n, ok))
    finally:
        srv.stop()
        srv.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
