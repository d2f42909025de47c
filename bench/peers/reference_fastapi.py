"""reference_fastapi.py: the reference design's preview streamer, as a peer
for the benchmark (bench/run.py). FastAPI + uvicorn from Debian, run with
/usr/bin/python3. As in the public Python CryoMamba server: a connection
manager that awaits send_text() to each subscriber in turn; per tick a numpy
random mask, base64 and json.dumps; asyncio.sleep(1/hz) between ticks.
Same protocol subset as bench/floor.c: POST /v1/jobs {volume:{shape},
params:{preview_hz, preview_scale, duration_s}} -> {job_id}, and
/ws/jobs/{id} streaming `connected` then `preview` messages.

    /usr/bin/python3 bench/peers/reference_fastapi.py --port 0

prints "listening on http://127.0.0.1:PORT" once it accepts connections.
"""
import argparse
import asyncio
import base64
import datetime
import json
import socket
import sys
import uuid

import numpy as np
import uvicorn
from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect

app = FastAPI()


def now_ts():
    return datetime.datetime.utcnow().strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class ConnectionManager:
    """One list of sockets per job; broadcast awaits each send in turn."""

    def __init__(self):
        self.active = {}

    async def connect(self, job_id, ws):
        await ws.accept()
        self.active.setdefault(job_id, []).append(ws)

    def disconnect(self, job_id, ws):
        conns = self.active.get(job_id, [])
        if ws in conns:
            conns.remove(ws)

    async def broadcast(self, job_id, text):
        for ws in list(self.active.get(job_id, [])):
            try:
                await ws.send_text(text)
            except Exception:
                self.disconnect(job_id, ws)


manager = ConnectionManager()
jobs = {}


async def run_job(job_id, shape, hz, scale, duration_s):
    pshape = [-(-d // scale) for d in shape]
    loop = asyncio.get_running_loop()
    end = loop.time() + duration_s
    seq = 0
    while loop.time() < end:
        mask = np.random.randint(0, 2, size=pshape, dtype=np.uint8)
        seq += 1
        msg = {
            "type": "preview",
            "job_id": job_id,
            "seq": seq,
            "timestamp": now_ts(),
            "data": {
                "scale": [scale, scale, scale],
                "shape": pshape,
                "dtype": "uint8",
                "payload": base64.b64encode(mask.tobytes()).decode("ascii"),
            },
        }
        await manager.broadcast(job_id, json.dumps(msg))
        await asyncio.sleep(1.0 / hz)


@app.post("/v1/jobs", status_code=201)
async def create_job(request: Request):
    body = await request.body()
    req = json.loads(body) if body else {}
    params = req.get("params", {})
    shape = req.get("volume", {}).get("shape", [64, 64, 64])
    hz = float(params.get("preview_hz", 1.0))
    scale = int(params.get("preview_scale", 1))
    duration_s = float(params.get("duration_s", 30))
    job_id = str(uuid.uuid4())
    jobs[job_id] = asyncio.create_task(
        run_job(job_id, shape, hz, scale, duration_s))
    return {"job_id": job_id, "status": "created"}


@app.websocket("/ws/jobs/{job_id}")
async def ws_job(websocket: WebSocket, job_id: str):
    await manager.connect(job_id, websocket)
    await websocket.send_text(json.dumps({
        "type": "connected", "job_id": job_id, "seq": 0,
        "timestamp": now_ts(), "data": {"state": "running"}}))
    try:
        while True:
            await websocket.receive_text()
    except WebSocketDisconnect:
        manager.disconnect(job_id, websocket)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=8000)
    args = ap.parse_args()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    print("listening on http://127.0.0.1:%d" % sock.getsockname()[1],
          flush=True)
    config = uvicorn.Config(app, log_level="warning", ws="websockets",
                            ws_ping_interval=None, backlog=4096)
    server = uvicorn.Server(config)
    server.run(sockets=[sock])


if __name__ == "__main__":
    sys.exit(main())
