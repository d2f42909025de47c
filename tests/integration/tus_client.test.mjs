// tus_client.test.mjs: cryomambad's /v1/uploads driven by tus-js-client (a
// tus client nobody here wrote, pinned in package-lock.json): an upload in
// small chunks becomes a volume, an upload aborted half-way resumes with a
// new client instance from the stored upload URL, and a PATCH whose
// Upload-Checksum does not match is refused (460). With parallelUploads
// (tus concatenation): the parts and the final become the right volume, and
// a parallel upload aborted half-way resumes its parts from a URL storage.
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

// A final upload is answered 201 before it is assembled: HEAD shows no
// Upload-Offset until it is a volume. Polls with a deadline.
async function volumeOfFinal(uploadUrl) {
  const deadline = Date.now() + 60000;
  for (;;) {
    const res = await fetch(uploadUrl, { method: 'HEAD', headers: { 'Tus-Resumable': '1.0.0' } });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('upload-concat'), /^final;\/v1\/uploads\//);
    if (res.headers.get('cryomamba-volume-id')) {
      assert.equal(res.headers.get('upload-offset'), res.headers.get('upload-length'));
      return volumeOf(uploadUrl);
    }
    assert.equal(res.headers.get('upload-offset'), null);
    assert.ok(Date.now() < deadline, 'the final upload did not complete');
    await new Promise((resolve) => setImmediate(resolve));
  }
}

// tus-js-client's URL storage, in memory: what lets a new client instance
// find the parts of an aborted parallel upload.
class MemoryUrlStorage {
  constructor() { this.entries = new Map(); this.next = 0; }
  findAllUploads() { return Promise.resolve([...this.entries.values()]); }
  findUploadsByFingerprint(fp) {
    return Promise.resolve([...this.entries.values()].filter((e) => e.fingerprint === fp));
  }
  removeUpload(key) { this.entries.delete(key); return Promise.resolve(); }
  addUpload(fingerprint, upload) {
    const key = `mem-${this.next++}`;
    this.entries.set(key, { ...upload, fingerprint, urlStorageKey: key });
    return Promise.resolve(key);
  }
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

test('parallelUploads: 4 parts and a final become one volume', async () => {
  const data = makeMrc(16, 32, 64);
  const posts = [];
  const up = await new Promise((resolve, reject) => {
    const u = upload(data, {
      parallelUploads: 4,
      onBeforeRequest: (req) => {
        if (req.getMethod() === 'POST') posts.push(req.getHeader('Upload-Concat'));
      },
      onSuccess: () => resolve(u),
      onError: reject,
    });
    u.start();
  });
  assert.equal(posts.filter((c) => c === 'partial').length, 4);
  assert.equal(posts.filter((c) => c && c.startsWith('final;')).length, 1);
  const vol = await volumeOfFinal(up.url);
  assert.equal(vol.sha256, createHash('sha256').update(data).digest('hex'));
  assert.equal(vol.size_bytes, data.length);
  assert.equal(vol.filename, 'tus.mrc');
  assert.deepEqual(vol.shape, [16, 32, 64]);
  const volumes = await (await fetch(`${base}/v1/volumes?limit=1000`)).json();
  assert.equal(volumes.volumes.filter((v) => v.sha256 === vol.sha256).length, 1);
});

test('an aborted parallel upload resumes its parts with a new client', async () => {
  const data = makeMrc(16, 64, 64); // 4 parts of 64 KiB, 8 KiB chunks
  const urlStorage = new MemoryUrlStorage();
  const first = upload(data, { parallelUploads: 4, urlStorage });
  let aborted = false;
  await new Promise((resolve, reject) => {
    first.options.onError = reject;
    first.options.onProgress = (sent) => {
      if (sent >= data.length / 2 && !aborted) {
        aborted = true;
        first.abort().then(resolve, reject);
      }
    };
    first.start();
  });
  const stored = await first.findPreviousUploads();
  assert.equal(stored.length, 1);
  assert.equal(stored[0].parallelUploadUrls.length, 4);
  let offsets = 0;
  for (const url of stored[0].parallelUploadUrls) {
    const head = await fetch(url, { method: 'HEAD', headers: { 'Tus-Resumable': '1.0.0' } });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get('upload-concat'), 'partial');
    offsets += Number(head.headers.get('upload-offset'));
  }
  assert.ok(offsets > 0 && offsets < data.length, `parts hold ${offsets} bytes`);
  const posts = [];
  const second = upload(data, {
    parallelUploads: 4,
    urlStorage,
    onBeforeRequest: (req) => {
      if (req.getMethod() === 'POST') posts.push(req.getHeader('Upload-Concat'));
    },
  });
  second.resumeFromPreviousUpload(stored[0]);
  await new Promise((resolve, reject) => {
    second.options.onSuccess = resolve;
    second.options.onError = reject;
    second.start();
  });
  // Resumed, not started over: the only POST is the final's.
  assert.equal(posts.length, 1);
  assert.ok(posts[0].startsWith('final;'));
  const vol = await volumeOfFinal(second.url);
  assert.equal(vol.sha256, createHash('sha256').update(data).digest('hex'));
  // A consumed part is removed once its removal commits (HEAD says 200
  // until then): polled.
  for (const url of stored[0].parallelUploadUrls) {
    const deadline = Date.now() + 60000;
    for (;;) {
      const head = await fetch(url, { method: 'HEAD', headers: { 'Tus-Resumable': '1.0.0' } });
      if (head.status === 404) break;
      assert.equal(head.status, 200);
      assert.ok(Date.now() < deadline, 'a consumed part is not removed');
      await new Promise((resolve) => setImmediate(resolve));
    }
  }
});
