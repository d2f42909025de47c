// tus_client.test.mjs: cryomambad's /v1/uploads driven by tus-js-client (a
// tus client nobody here wrote, pinned in package-lock.json): an upload in
// small chunks becomes a volume, an upload aborted half-way resumes with a
// new client instance from the stored upload URL, and a PATCH whose
// Upload-Checksum does not match is refused (460).
// Run: CRYOMAMBA_SERVER_BIN=build/src/server/cryomambad node --test tus_client.test.mjs
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, 'package.json'));
const tus = require('tus-js-client');
const SERVER_BIN = process.env.CRYOMAMBA_SERVER_BIN ||
  path.resolve(here, '../../build/src/server/cryomambad');

let server;
let base;
let tmp;

// An MRC2014 file: float32 noise of nz x ny x nx voxels.
function makeMrc(nz, ny, nx) {
  const head = Buffer.alloc(1024);
  [nx, ny, nz].forEach((v, i) => head.writeInt32LE(v, 4 * i));
  head.writeInt32LE(2, 12); // mode: float32
  [nx, ny, nz].forEach((v, i) => head.writeInt32LE(v, 28 + 4 * i));
  [nx, ny, nz].forEach((v, i) => head.writeFloatLE(v * 1.5, 40 + 4 * i));
  [90, 90, 90].forEach((v, i) => head.writeFloatLE(v, 52 + 4 * i));
  [1, 2, 3].forEach((v, i) => head.writeInt32LE(v, 64 + 4 * i));
  head.writeInt32LE(20140, 108);
  head.write('MAP ', 208, 'latin1');
  head.writeUInt8(0x44, 212);
  head.writeUInt8(0x44, 213);
  return Buffer.concat([head, randomBytes(nz * ny * nx * 4)]);
}

before(async () => {
  tmp = mkdtempSync(path.join(tmpdir(), 'cryomamba-tus-'));
  mkdirSync(path.join(tmp, 'data'));
  server = spawn(SERVER_BIN, ['--port', '0', '--bind', '127.0.0.1',
    '--state-dir', path.join(tmp, 'state'), '--data-root', path.join(tmp, 'data')],
  { stdio: ['ignore', 'pipe', 'pipe'] });
  server.stderr.resume();
  const port = await new Promise((resolve, reject) => {
    let out = '';
    server.on('exit', (code) => reject(new Error('server exited early: ' + code)));
    server.stdout.on('data', (chunk) => {
      out += chunk.toString();
      const m = out.match(/listening on http:\/\/127\.0\.0\.1:(\d+)/);
      if (m) {
        server.removeAllListeners('exit');
        resolve(Number(m[1]));
      }
    });
  });
  base = `http://127.0.0.1:${port}`;
});

after(async () => {
  server.kill('SIGTERM');
  await new Promise((resolve) => server.on('exit', resolve));
  rmSync(tmp, { recursive: true, force: true });
});

function upload(data, opts) {
  return new tus.Upload(data, {
    endpoint: `${base}/v1/uploads`,
    chunkSize: 8192,
    retryDelays: null,
    metadata: { filename: 'tus.mrc' },
    ...opts,
  });
}

async function volumeOf(uploadUrl) {
  const res = await fetch(uploadUrl, { method: 'HEAD', headers: { 'Tus-Resumable': '1.0.0' } });
  assert.equal(res.status, 200);
  const id = res.headers.get('cryomamba-volume-id');
  assert.ok(id, 'a completed upload names its volume');
  return (await fetch(`${base}/v1/volumes/${id}`)).json();
}

test('an upload in small chunks becomes a volume', async () => {
  const data = makeMrc(4, 16, 32);
  const up = await new Promise((resolve, reject) => {
    const u = upload(data, { onSuccess: () => resolve(u), onError: reject });
    u.start();
  });
  const vol = await volumeOf(up.url);
  assert.equal(vol.sha256, createHash('sha256').update(data).digest('hex'));
  assert.deepEqual(vol.shape, [4, 16, 32]);
  assert.equal(vol.filename, 'tus.mrc');
});

test('an aborted upload resumes with a new client from its URL', async () => {
  const data = makeMrc(8, 16, 32);
  const first = upload(data, {});
  const url = await new Promise((resolve, reject) => {
    first.options.onError = reject;
    first.options.onChunkComplete = (_chunk, accepted) => {
      if (accepted >= data.length / 2) {
        first.abort().then(() => resolve(first.url), reject);
      }
    };
    first.start();
  });
  const head = await fetch(url, { method: 'HEAD', headers: { 'Tus-Resumable': '1.0.0' } });
  const offset = Number(head.headers.get('upload-offset'));
  assert.ok(offset >= data.length / 2 && offset < data.length, `offset ${offset}`);
  let resumedFrom = -1;
  await new Promise((resolve, reject) => {
    const second = upload(data, {
      uploadUrl: url,
      onSuccess: resolve,
      onError: reject,
      onProgress: (sent) => { if (resumedFrom < 0) resumedFrom = sent; },
    });
    second.start();
  });
  assert.ok(resumedFrom >= offset, 'the second client resumed, not restarted');
  const vol = await volumeOf(url);
  assert.equal(vol.sha256, createHash('sha256').update(data).digest('hex'));
});

test('a PATCH with a wrong Upload-Checksum is refused with 460', async () => {
  const data = makeMrc(2, 8, 8);
  const wrong = createHash('sha1').update('not these bytes').digest('base64');
  const err = await new Promise((resolve) => {
    const u = upload(data, {
      onBeforeRequest: (req) => {
        if (req.getMethod() === 'PATCH') req.setHeader('Upload-Checksum', `sha1 ${wrong}`);
      },
      onSuccess: () => resolve(null),
      onError: resolve,
    });
    u.start();
  });
  assert.ok(err, 'the upload must fail');
  assert.equal(err.originalResponse.getStatus(), 460);
});
