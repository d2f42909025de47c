// node_ws.mjs: a Node.js peer for the benchmark (bench/run.py), on the `ws`
// library used the efficient way: each preview is encoded once into one
// Buffer and ws.send() is called with it for every subscriber (ws frames it
// per socket and queues it without limit behind a slow reader). Timers on
// absolute deadlines. Same protocol subset as bench/floor.c.
//   node bench/peers/node_ws.mjs --port 0
import crypto from 'node:crypto';
import http from 'node:http';
import { WebSocketServer } from 'ws';

const jobs = new Map();

function nowTs() {
  // Date has milliseconds; pad to the protocol's microseconds.
  return new Date().toISOString().replace('Z', '000Z');
}

function startJob(shape, hz, scale, durationS) {
  const id = crypto.randomUUID();
  const pshape = shape.map((d) => Math.ceil(d / scale));
  const n = pshape[0] * pshape[1] * pshape[2];
  const job = { id, subs: new Set(), seq: 0 };
  jobs.set(id, job);
  const periodMs = 1000 / hz;
  const start = performance.now();
  const end = start + durationS * 1000;
  let tick = 0;
  const onTick = () => {
    const now = performance.now();
    if (now >= end) return;
    // setTimeout may fire a little early: never repeat a tick; a late
    // wake-up skips the ticks it missed.
    tick = Math.max(tick + 1, Math.floor((now - start) / periodMs));
    const mask = crypto.randomBytes(n);
    for (let i = 0; i < n; i++) mask[i] &= 1;
    job.seq += 1;
    const text = JSON.stringify({
      type: 'preview', job_id: id, seq: job.seq, timestamp: nowTs(),
      data: { scale: [scale, scale, scale], shape: pshape, dtype: 'uint8',
              payload: mask.toString('base64') },
    });
    const buf = Buffer.from(text); // encode once, send to every subscriber
    for (const ws of job.subs) ws.send(buf, { binary: false });
    const next = start + (tick + 1) * periodMs;
    setTimeout(onTick, Math.max(0, next - performance.now()));
  };
  setTimeout(onTick, periodMs);
  return job;
}

const server = http.createServer((req, res) => {
  if (req.method !== 'POST' || req.url !== '/v1/jobs') {
    res.writeHead(404, { 'Content-Type': 'application/json' });
    res.end('{"error":{"code":"route_not_found"}}');
    return;
  }
  let body = '';
  req.on('data', (c) => { body += c; });
  req.on('end', () => {
    const r = body ? JSON.parse(body) : {};
    const p = r.params || {};
    const job = startJob((r.volume && r.volume.shape) || [64, 64, 64],
      p.preview_hz || 1, p.preview_scale || 1, p.duration_s ?? 30);
    res.writeHead(201, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ job_id: job.id, status: 'created' }));
  });
});

const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });
server.on('upgrade', (req, socket, head) => {
  const m = /^\/ws\/jobs\/([^/?]+)/.exec(req.url);
  const job = m && jobs.get(m[1]);
  if (!job) {
    socket.end('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n');
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => {
    ws.send(JSON.stringify({ type: 'connected', job_id: job.id, seq: 0,
      timestamp: nowTs(), data: { state: 'running' } }));
    job.subs.add(ws);
    ws.on('close', () => job.subs.delete(ws));
    ws.on('error', () => job.subs.delete(ws));
  });
});

const portArg = process.argv.indexOf('--port');
const port = portArg > 0 ? Number(process.argv[portArg + 1]) : 8000;
server.listen({ host: '127.0.0.1', port, backlog: 4096 }, () => {
  console.log(`listening on http://127.0.0.1:${server.address().port}`);
});
