#!/usr/bin/python3
"""Reproduces the classic engine's chunks stream ending short of its artifact:
a phantom uploaded, one classic job at preview_scale 1, one chunks subscriber
at scale 1; prints how many voxels of its final mask differ from the
artifact, in which chunks, and the labels. Usage:
    /usr/bin/python3 bench/chunks_check_classic.py 128,256,256 4   # shape, preview_hz"""
import asyncio, json, os, subprocess, sys, tempfile
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT + "/tests/integration")
os.environ["CRYOMAMBA_SERVER_BIN"] = ROOT + "/build/src/server/cryomambad"
import numpy as np, websockets
from chunk_client import ChunkClient
from harness import Server, read_mrc
shape = [int(x) for x in sys.argv[1].split(",")]
hz = float(sys.argv[2])
cli = ROOT + "/build/src/cli/cryomamba"
srv = Server(["--log-level", "warn"]).start()
vol = tempfile.mktemp(suffix=".mrc")
subprocess.run([cli, "phantom", "--shape", sys.argv[1], "--seed", "1", "--noise", "0.5", "-o", vol], check=True, capture_output=True)
vid = json.loads(subprocess.run([cli, "--server", srv.base, "--json", "upload", vol, "--no-progress"], check=True, capture_output=True, text=True).stdout)["volume_id"]
os.unlink(vol)
async def main():
    jid = srv.create_job({"volume_id": vid}, engine="classic", preview_hz=hz, preview_scale=1)["job_id"]
    c = ChunkClient()
    async with websockets.connect(srv.ws_url(jid) + "?encoding=chunks&scale=1", max_size=None) as ws:
        async for raw in ws:
            c.feed(raw)
            if c.terminal is not None: break
    full = read_mrc(srv.get("/v1/jobs/%s/artifacts/mask.mrc" % jid).body)[1]
    m = c.mask(0)
    d = np.argwhere(m != full)
    print("shape", shape, "hz", hz, "deltas", len(c.deltas), "last complete", c.last_complete, "terminal seq", c.terminal["seq"], "differ", len(d))
    if len(d):
        ch = {tuple(x // 32) for x in d}
        print("  chunks with differences:", len(ch), "e.g.", sorted(ch)[:5])
        vals = {}
        for z, y, x in d[:100000]:
            k = (int(m[z, y, x]), int(full[z, y, x])); vals[k] = vals.get(k, 0) + 1
        print("  (client, artifact) label pairs:", vals)
        print("  versions of those chunks at the client:", sorted({c.versions.get((0,) + k) for k in ch})[:10])
        print("  job", {k: v for k, v in srv.job(jid).items() if k in ("state", "previews_sent", "last_seq")})
asyncio.run(main())
srv.stop(); srv.cleanup()
