// ws_clients.test.mjs: drives cryomambad with Node's `ws` client (a client
// nobody here wrote): connect, connected + previews, base64 payloads of
// prod(shape) bytes, JSON ping/pong, RFC 6455 ping, close 4404 / 4000.
// Run: CRYOMAMBA_SERVER_BIN=build/src/server/cryomambad node --test ws_clients.test.mjs
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomUUID } from 'node:crypto';

const here = path.dirname(fileURLToPath(import.meta.url));
// `ws` is installed next to this file (npm ci in tests/integration); NODE_PATH
// is a fallback, since ES module resolution ignores it.
function loadWs() {
  const require = createRequire(path.join(here, 'package.json'));
  try {
    return require('ws');
  } catch (e) {
    for (const dir of (process.env.NODE_PATH || '').split(path.delimiter).filter(Boolean)) {
      try {
        return createRequire(path.join(dir, 'noop.js'))('ws');
      } catch (_) { /* next */ }
    }
    throw new Error('the ws package is missing: run `npm ci` in tests/integration');
  }
}
const WebSocket = loadWs();

const SERVER_BIN = process.env.CRYOMAMBA_SERVER_BIN ||
  path.resolve(here, '../../build/src/server/cryomambad');
const TS_RE = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/;

let server;
let base;
let wsBase;
let tmp;

function startServer() {
  tmp = mkdtempSync(path.join(tmpdir(), 'cryomamba-node-'));
  mkdirSync(path.join(tmp, 'data'));
  const proc = spawn(SERVER_BIN, ['--port', '0', '--bind', '127.0.0.1',
    '--state-dir', path.join(tmp, 'state'), '--data-root', path.join(tmp, 'data'),
    '--max-running', '4'], { stdio: ['ignore', 'pipe', 'pipe'] });
  proc.stderr.resume();
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error('server did not listen: ' + out)), 20000);
    proc.on('exit', (code) => reject(new Error('server exited early: ' + code)));
    proc.on('error', reject);
    proc.stdout.on('data', (chunk) => {
      out += chunk.toString();
      const m = out.match(/listening on http:\/\/127\.0\.0\.1:(\d+)/);
      if (m) {
        clearTimeout(timer);
        proc.removeAllListeners('exit');
        resolve({ proc, port: Number(m[1]) });
      }
    });
  });
}

async function api(method, p, body) {
  const res = await fetch(base + p, {
    method,
    headers: body === undefined ? {} : { 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, json: await res.json() };
}

async function createJob(body) {
  const r = await api('POST', '/v1/jobs', body);
  assert.equal(r.status, 201, JSON.stringify(r.json));
  return r.json;
}

// Opens a socket and queues every message; next(pred) waits for a match.
function subscribe(jobId) {
  const ws = new WebSocket(`${wsBase}/ws/jobs/${jobId}`, { perMessageDeflate: true });
  const queue = [];
  const waiters = [];
  const state = { ws, closed: null, opened: null };
  state.opened = new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('unexpected-response', (req, res) => reject(new Error('HTTP ' + res.statusCode)));
    ws.once('error', reject);
  });
  state.opened.catch(() => {});
  ws.on('error', () => {}); // surfaced through `opened` / `closed`
  state.closed = new Promise((resolve) => {
    ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() }));
  });
  ws.on('message', (data, isBinary) => {
    assert.equal(isBinary, false, 'server sent a binary message');
    const raw = data.toString('utf8');
    queue.push({ msg: JSON.parse(raw), raw });
    while (waiters.length) waiters.shift()();
  });
  state.next = async (pred = () => true, timeoutMs = 15000) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = queue.findIndex((e) => pred(e.msg));
      if (i >= 0) return queue.splice(0, i + 1)[i];
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('timed out waiting for a message');
      await new Promise((resolve) => {
        const t = setTimeout(resolve, left);
        waiters.push(() => { clearTimeout(t); resolve(); });
      });
    }
  };
  state.queue = queue;
  return state;
}

before(async () => {
  const s = await startServer();
  server = s.proc;
  base = `http://127.0.0.1:${s.port}`;
  wsBase = `ws://127.0.0.1:${s.port}`;
});

after(async () => {
  const exited = new Promise((resolve) => server.once('exit', (code, sig) => resolve({ code, sig })));
  server.kill('SIGTERM');
  const timeout = new Promise((resolve) => setTimeout(() => resolve(null), 10000));
  const res = await Promise.race([exited, timeout]);
  if (res === null) server.kill('SIGKILL');
  rmSync(tmp, { recursive: true, force: true });
  assert.deepEqual(res, { code: 0, sig: null }, 'server did not exit 0 within 10 s of SIGTERM');
});

test('connected, then previews with base64 payloads of prod(shape) bytes', async () => {
  const job = await createJob({ volume: { shape: [9, 17, 33] },
    params: { preview_hz: 5, preview_scale: 2, duration_s: 60, pattern: 'blobs' } });
  const sub = subscribe(job.job_id);
  await sub.opened;
  assert.equal(sub.ws.extensions, '', 'an extension was negotiated');
  const { msg: conn } = await sub.next();
  assert.equal(conn.type, 'connected');
  assert.equal(conn.seq, 0);
  assert.equal(conn.job_id, job.job_id);
  assert.match(conn.timestamp, TS_RE);
  assert.deepEqual(conn.data.preview_shape, [5, 9, 17]);
  let lastSeq = 0;
  for (let i = 0; i < 3; i++) {
    const { msg } = await sub.next((m) => m.type === 'preview');
    assert.ok(msg.seq > lastSeq, 'seq not increasing');
    lastSeq = msg.seq;
    assert.match(msg.timestamp, TS_RE);
    assert.deepEqual(msg.data.scale, [2, 2, 2]);
    assert.deepEqual(msg.data.shape, [5, 9, 17]);
    assert.equal(msg.data.dtype, 'uint8');
    const buf = Buffer.from(msg.data.payload, 'base64');
    assert.equal(buf.length, 5 * 9 * 17);
    assert.equal(Buffer.from(buf).toString('base64'), msg.data.payload, 'non-canonical base64');
    for (const v of buf) assert.ok(v <= 2, `label ${v} outside {0,1,2}`);
  }
  sub.ws.close(1000);
  const { code } = await sub.closed;
  assert.equal(code, 1000);
  await api('DELETE', `/v1/jobs/${job.job_id}`);
});

test('JSON ping gets a pong; RFC 6455 ping gets a pong frame', async () => {
  const job = await createJob({ volume: { shape: [4, 4, 4] },
    params: { preview_hz: 2, duration_s: 60 } });
  const sub = subscribe(job.job_id);
  await sub.opened;
  await sub.next((m) => m.type === 'connected');
  sub.ws.send(JSON.stringify({ type: 'ping' }));
  const { msg: pong } = await sub.next((m) => m.type === 'pong');
  assert.equal(pong.seq, 0);
  assert.equal(pong.job_id, job.job_id);
  assert.deepEqual(pong.data, {});
  const got = new Promise((resolve) => sub.ws.once('pong', (d) => resolve(d.toString())));
  sub.ws.ping('node-ping');
  assert.equal(await got, 'node-ping');
  sub.ws.send('not json');
  const { msg: err } = await sub.next((m) => m.type === 'error');
  assert.equal(err.seq, 0);
  assert.equal(err.data.code, 'bad_message');
  sub.ws.close();
  await sub.closed;
  await api('DELETE', `/v1/jobs/${job.job_id}`);
});

test('unknown job closes with 4404, malformed id with 4000', async () => {
  for (const [id, want] of [[randomUUID(), 4404], ['not-a-job', 4000]]) {
    const sub = subscribe(id);
    const { code } = await sub.closed;
    assert.equal(code, want, `close code for ${id}`);
    assert.equal(sub.queue.filter((e) => e.msg.type === 'connected').length, 0);
  }
});

test('completed job: late joiner gets connected, final preview, completed', async () => {
  const job = await createJob({ volume: { shape: [6, 6, 6] },
    params: { preview_hz: 10, duration_s: 0.5, pattern: 'blobs' } });
  for (let i = 0; i < 300; i++) {
    const r = await api('GET', `/v1/jobs/${job.job_id}`);
    if (r.json.state === 'completed') break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const sub = subscribe(job.job_id);
  await sub.opened;
  const types = [];
  for (let i = 0; i < 3; i++) types.push((await sub.next()).msg.type);
  assert.deepEqual(types, ['connected', 'preview', 'completed']);
  sub.ws.close();
  await sub.closed;
});
