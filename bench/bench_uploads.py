#!/usr/bin/python3
"""bench_uploads.py: tus upload throughput against a fresh cryomambad on
loopback, next to the disk's own limit measured in the same run.

    /usr/bin/python3 bench/bench_uploads.py [build/src/server/cryomambad [OTHER ...]] \
        [--sizes 256M,1G] [--chunk 64M] [--repeat 3] [--checksum] [--dir DIR] \
        [--cases up/1,copy/chunk] [--attach 'strace -c -f -o {out} -p {pid}'] \
        [--rate 500]

For each size S (the MRC's data bytes; a random float32 MRC2014 file, fsynced
before any measurement) and each repetition, in this order:
  copy/chunk  the file copied to the same filesystem with the server's
              durability: 1 MiB pwrite()s, fdatasync every --chunk bytes
              and at the end (the server syncs once per PATCH), then a
              sha256 pass over the copy (the server's completion does the same)
  copy/end    the same copy with one fdatasync at the end
  up/1        one upload, PATCHes of --chunk bytes sent with sendfile(2)
  up/1+sum    the same with Upload-Checksum: sha256 per PATCH (--checksum;
              digests computed before the timed window)
  up/4 files  four concurrent uploads of four files of S/4 each
  up/4 concat four partial uploads of the S file joined by a final POST,
              when the server's OPTIONS advertises `concatenation`
Every upload case runs its own server (a fresh state dir in --dir), so the
peak RSS (VmHWM) is that case's. "durable" is the time from the POST to the
moment every byte is fdatasync'ed (the last PATCH's answer waits for the
completion, so a second connection polls HEAD every 2 ms for Upload-Offset =
Upload-Length); "to volume" ends at the answer naming the volume (after the
server's MRC check and whole-file sha256). Medians of the repetitions,
which run the cases in turn (after one warm-up copy per size, not counted);
with several server binaries every upload case runs on each, so two builds
compare within one run.
"""

import argparse
import base64
import datetime
import functools
import hashlib
import json
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from upload_client import (MIB, Sampler, TusConn, make_random_mrc,  # noqa: E402
                           proc_cpu_s, proc_status_kib, tus_extensions)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
POLL_S = 0.002


def parse_size(s):
    m = re.fullmatch(r"(\d+)\s*([KMG]?)(i?B)?", s.strip(), re.I)
    if not m:
        raise argparse.ArgumentTypeError("bad size %r" % s)
    return int(m.group(1)) << {"": 0, "K": 10, "M": 20, "G": 30}[m.group(2).upper()]


def client_cpu_s():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class DurablePoller(threading.Thread):
    """HEADs `loc` on its own connection until Upload-Offset = `length`;
    self.t is the monotonic time of that answer."""

    def __init__(self, port, loc, length):
        super().__init__(daemon=True)
        self.conn, self.loc, self.length, self.t = TusConn(port, 60), loc, length, None
        self.done = threading.Event()

    def run(self):
        while not self.done.is_set():
            status, h, _ = self.conn.request("HEAD", self.loc)
            if status != 200 or int(h["upload-offset"]) == self.length:
                self.t = time.monotonic() if status == 200 else None
                break
            self.done.wait(POLL_S)
        self.conn.close()


def chunk_digests(path, start, length, chunk):
    out = []
    with open(path, "rb") as f:
        for off in range(0, length, chunk):
            f.seek(start + off)
            out.append(base64.b64encode(hashlib.sha256(
                f.read(min(chunk, length - off))).digest()).decode())
    return out


def upload_range(port, path, start, length, chunk, partial, digests, out, rate=None):
    """Uploads bytes [start, start+length) of `path` (bodies paced at `rate`
    bytes/s when given); fills `out`."""
    conn = TusConn(port, rate=rate)
    hdr = [("Upload-Length", str(length)),
           ("Upload-Metadata", "filename " + base64.b64encode(
               os.path.basename(path).encode()).decode())]
    if partial:
        hdr.append(("Upload-Concat", "partial"))
    status, h, body = conn.request("POST", "/v1/uploads", hdr)
    assert status == 201, (status, body)
    loc = h["location"]
    off, poller = 0, None
    with open(path, "rb") as f:
        while off < length:
            n = min(chunk, length - off)
            ph = [("Content-Type", "application/offset+octet-stream"),
                  ("Upload-Offset", str(off))]
            if digests:
                ph.append(("Upload-Checksum", "sha256 " + digests[off // chunk]))
            conn.send("PATCH", loc, ph, file=f, offset=start + off, count=n)
            if off + n == length and not partial:
                poller = DurablePoller(port, loc, length)
                poller.start()
            status, h, body = conn.recv()
            assert status == 204, (status, body)
            off = int(h["upload-offset"])
    t = time.monotonic()
    if poller is not None:
        poller.done.set()
        poller.join()
    conn.close()
    out.update(loc=loc, t_durable=poller.t if poller and poller.t else t, t_done=t,
               volume_id=h.get("cryomamba-volume-id"))


def finish_concat(port, locs):
    """The final POST; then, if its answer names no volume yet, HEAD until
    one does. Returns (volume id, monotonic time)."""
    conn = TusConn(port)
    status, h, body = conn.request("POST", "/v1/uploads",
                                   [("Upload-Concat", "final;" + " ".join(locs))])
    assert status == 201 and "location" in h, (status, h, body)
    final = h["location"]
    while "cryomamba-volume-id" not in h:
        time.sleep(POLL_S)
        status, h, body = conn.request("HEAD", final)
        assert status == 200, (status, body)
    t = time.monotonic()
    conn.close()
    return h["cryomamba-volume-id"], t


def start_server(a, state, server):
    cmd = [server, "--port", "0", "--state-dir", state, "--log-level", "warn",
           "--max-connections-per-ip", "0"] + a.extra.split()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    port = int(re.search(r":(\d+)\s*$", p.stdout.readline().decode()).group(1))
    return p, port, cmd


def run_upload(a, server, jobs, concat, checksum):
    """jobs: [(path, start, length, sha256 of that range as a file or None)]."""
    state = tempfile.mkdtemp(prefix="state-", dir=a.work)
    p, port, cmd = start_server(a, state, server)
    prof = None
    try:
        if a.attach:
            a.attach_n += 1
            out = "%s.%d" % (a.attach_out, a.attach_n)
            prof = subprocess.Popen(shlex.split(a.attach.format(pid=p.pid, out=out)),
                                    stderr=subprocess.DEVNULL)
            time.sleep(1.0)  # let perf/strace attach before the first byte
        if concat and "concatenation" not in tus_extensions(port):
            return None
        digests = [chunk_digests(j[0], j[1], j[2], a.chunk) if checksum else None
                   for j in jobs]
        rss0, ccpu0 = proc_status_kib(p.pid, "VmRSS"), client_cpu_s()
        cpu0, loop0 = proc_cpu_s(p.pid), proc_cpu_s(p.pid, p.pid)
        sampler = Sampler(p.pid)
        sampler.start()
        t0 = time.monotonic()
        outs = [{} for _ in jobs]
        threads = [threading.Thread(target=upload_range, args=(
            port, j[0], j[1], j[2], a.chunk, concat, digests[i], outs[i],
            a.rate * 1e6 if a.rate else None))
            for i, j in enumerate(jobs)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert all("t_done" in o for o in outs), "an upload thread failed"
        t_durable = max(o["t_durable"] for o in outs)
        if concat:
            vid, t_end = finish_concat(port, [o["loc"] for o in outs])
            vols = [(vid, sum(j[2] for j in jobs), a.sha[jobs[0][0]])]
        else:
            t_end = max(o["t_done"] for o in outs)
            vols = [(o["volume_id"], j[2], j[3]) for o, j in zip(outs, jobs)]
        ccpu1 = client_cpu_s()
        sampler.stop()
        cpu1, loop1 = proc_cpu_s(p.pid), proc_cpu_s(p.pid, p.pid)
        hwm = proc_status_kib(p.pid, "VmHWM")
        _, _, cpu_d, loop_d, runq_d, _ = sampler.at(t_durable)
        runq0 = sampler.samples[0][4]
        for vid, size, sha in vols:
            status, _, body = TusConn(port, 30).request("GET", "/v1/volumes/%s" % vid)
            v = json.loads(body)
            assert status == 200 and v["size_bytes"] == size and v["sha256"] == sha, v
        nbytes = sum(j[2] for j in jobs)
        return dict(bytes=nbytes, durable_s=t_durable - t0, done_s=t_end - t0,
                    cpu_transfer=cpu_d - cpu0, cpu_total=cpu1 - cpu0,
                    loop_transfer=loop_d - loop0, loop_total=loop1 - loop0,
                    runq_transfer=runq_d - runq0,
                    rss0_kib=rss0, rss_max_kib=sampler.max_rss_kib(), hwm_kib=hwm,
                    client_cpu=ccpu1 - ccpu0, server_cmd=cmd)
    finally:
        if prof is not None:
            prof.send_signal(signal.SIGINT)
            prof.wait(60)
        p.terminate()
        p.wait(30)
        shutil.rmtree(state, ignore_errors=True)


def run_copy(a, src, sync_every):
    """The disk's limit: src copied to the same filesystem in 1 MiB pwrites,
    fdatasync every `sync_every` bytes (0: only at the end), then a sha256
    pass over the copy (what the server's completion does)."""
    dst = os.path.join(a.work, "copy.mrc")
    size = os.path.getsize(src)
    buf = bytearray(MIB)
    mv = memoryview(buf)
    ccpu0 = client_cpu_s()
    t0 = time.monotonic()
    fi = os.open(src, os.O_RDONLY)
    fo = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    off = synced = 0
    while off < size:
        n = os.preadv(fi, [mv[:min(MIB, size - off)]], off)
        os.pwrite(fo, mv[:n], off)
        off += n
        if sync_every and off - synced >= sync_every:
            os.fdatasync(fo)
            synced = off
    os.fdatasync(fo)
    os.close(fo)
    os.close(fi)
    t1 = time.monotonic()
    md = hashlib.sha256()
    with open(dst, "rb", buffering=0) as f:
        n = f.readinto(buf)
        while n:
            md.update(mv[:n])
            n = f.readinto(buf)
    t2 = time.monotonic()
    os.unlink(dst)
    assert md.hexdigest() == a.sha[src]
    return dict(bytes=size, durable_s=t1 - t0, done_s=t2 - t0,
                client_cpu=client_cpu_s() - ccpu0)


def med(runs, key):
    return statistics.median(r[key] for r in runs)


def fs_of(path):
    best = ("", "?", "?")
    with open("/proc/mounts") as f:
        for line in f:
            dev, mnt, typ = line.split()[:3]
            if path.startswith(mnt) and len(mnt) > len(best[0]):
                best = (mnt, typ, dev)
    return "%s %s on %s" % (best[2], best[1], best[0])


def print_table(results):
    """Medians over the repetitions; MB/s also as min..max."""
    fmt = "%-6s %-15s %7s %15s %6s %7s %7s %6s %6s %6s %6s %17s %6s"
    print(fmt % ("size", "case", "durable", "MB/s durable", "x copy", "complete", "volume",
                 "loop", "pool", "total", "runq", "server RSS MiB", "client"))
    print(fmt % ("", "", "s", "median (range)", "/chunk", "s", "s", "-- server", "CPU s/GB",
                 "--", "s/GB", "before>max (HWM)", "s/GB"))
    for size, cases in results:
        copy = cases.get("copy/chunk")
        base = copy and med(copy, "bytes") / med(copy, "durable_s")
        for name, runs in cases.items():
            if not runs:
                continue
            gb = med(runs, "bytes") / 1e9
            rates = [r["bytes"] / r["durable_s"] / 1e6 for r in runs]
            rate = med(runs, "bytes") / med(runs, "durable_s") / 1e6
            srv = ("-", "-", "-", "-", "-")
            if "cpu_total" in runs[0]:
                loop = med(runs, "loop_transfer") / gb
                srv = ("%.2f" % loop, "%.2f" % (med(runs, "cpu_transfer") / gb - loop),
                       "%.2f" % (med(runs, "cpu_total") / gb),
                       "%.2f" % (med(runs, "runq_transfer") / gb),
                       "%.1f>%.1f (%.1f)" % (med(runs, "rss0_kib") / 1024,
                                             med(runs, "rss_max_kib") / 1024,
                                             med(runs, "hwm_kib") / 1024))
            print(fmt % ((
                "%dM" % (size >> 20), name, "%.2f" % med(runs, "durable_s"),
                "%.0f (%.0f..%.0f)" % (rate, min(rates), max(rates)),
                "%.2f" % (rate * 1e6 / base) if base else "-",
                "%.2f" % (med(runs, "done_s") - med(runs, "durable_s")),
                "%.2f" % med(runs, "done_s")) + srv + ("%.2f" % (med(runs, "client_cpu") / gb),)))
    print("# loop = the server's event-loop thread (socket reads, parsing, copies into the "
          "write buffer) and pool = every other thread (pwrite, fdatasync, SQLite, hashing), "
          "up to 'durable'; total includes the completion; runq = the server's threads' "
          "time runnable but waiting for a CPU up to 'durable' (other load). copy rows: 'complete' is a sha256 "
          "pass over the copy (Python hashlib, OpenSSL, 1 MiB reads), the work of the "
          "server's completion; client CPU is the copier's.")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("servers", nargs="*", metavar="server",
                    default=[os.path.join(ROOT, "build", "src", "server", "cryomambad")],
                    help="one or more binaries; with several, every upload case runs on "
                    "each in turn (labelled #1, #2...) within each repetition")
    ap.add_argument("--sizes", default="256M,1G", help="MRC data sizes, multiples of 4 MiB")
    ap.add_argument("--chunk", type=parse_size, default=64 * MIB, help="PATCH size")
    ap.add_argument("--rate", type=float, default=0,
                    help="pace each upload stream's bodies at this many MB/s (10^6 "
                         "bytes), as a slower link would; 0: as fast as loopback goes")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--checksum", action="store_true", help="also run up/1 with Upload-Checksum")
    ap.add_argument("--dir", default=tempfile.gettempdir(),
                    help="where input files and state dirs go (the disk measured)")
    ap.add_argument("--extra", default="", help="extra server flags")
    ap.add_argument("--json", help="write the runs here")
    ap.add_argument("--cases", help="only these cases (comma-separated names as printed)")
    ap.add_argument("--attach", help="profile each upload case's server, e.g. "
                    "'strace -c -f -o {out} -p {pid}' or 'perf record -e cpu-clock -g "
                    "-o {out} -p {pid}' (stopped with SIGINT at the end of the case)")
    ap.add_argument("--attach-out", default="/tmp/bench-uploads-prof",
                    help="{out} for --attach: this path plus a number per case")
    a = ap.parse_args()
    a.servers = [os.path.abspath(x) for x in a.servers]
    sizes = [parse_size(s) for s in a.sizes.split(",")]
    assert all(s % (4 * MIB) == 0 for s in sizes), "sizes must be multiples of 4 MiB"
    assert a.chunk % MIB == 0, "--chunk must be a multiple of 1 MiB"
    a.work = tempfile.mkdtemp(prefix="bench-uploads-", dir=a.dir)
    a.sha, a.attach_n = {}, 0
    print("# %s" % " ".join([sys.executable] + sys.argv))
    print("# %s, %s, %d cores, load %s; files and state dirs on %s" % (
        datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), platform.release(),
        os.cpu_count(), " ".join("%.2f" % x for x in os.getloadavg()), fs_of(a.work)))
    for i, server in enumerate(a.servers):
        print("# server%s: %s --port 0 --state-dir <fresh> --log-level warn "
              "--max-connections-per-ip 0 %s" % (
                  " #%d" % (i + 1) if len(a.servers) > 1 else "", server, a.extra))
    if a.rate:
        print("# upload bodies paced at %g MB/s per stream" % a.rate)
    print("# PATCH %d MiB via sendfile(2); input files fsynced and in the page cache "
          "(reads hit RAM); writes reach the disk through fdatasync; the completion's "
          "re-read hits the page cache" % (a.chunk >> 20))
    sys.stdout.flush()
    results = []
    try:
        for size in sizes:
            big = os.path.join(a.work, "in-%dM.mrc" % (size >> 20))
            a.sha[big] = make_random_mrc(big, size)
            quarters = []
            for i in range(4):
                q = os.path.join(a.work, "in-%dM-q%d.mrc" % (size >> 20, i))
                a.sha[q] = make_random_mrc(q, size // 4)
                quarters.append((q, 0, os.path.getsize(q), a.sha[q]))
            total = os.path.getsize(big)
            part = -(-total // 4 // MIB) * MIB
            parts = [(big, s, min(part, total - s), None) for s in range(0, total, part)]
            cases = {"copy/chunk": lambda: run_copy(a, big, a.chunk),
                     "copy/end": lambda: run_copy(a, big, 0)}
            one = [(big, 0, total, a.sha[big])]
            for i, srv in enumerate(a.servers):
                tag = " #%d" % (i + 1) if len(a.servers) > 1 else ""
                cases["up/1" + tag] = functools.partial(run_upload, a, srv, one, False, False)
                if a.checksum:
                    cases["up/1+sum" + tag] = functools.partial(run_upload, a, srv, one,
                                                                False, True)
                cases["up/4 files" + tag] = functools.partial(run_upload, a, srv, quarters,
                                                              False, False)
                cases["up/4 concat" + tag] = functools.partial(run_upload, a, srv, parts,
                                                               True, False)
            if a.cases:
                want = a.cases.split(",")
                cases = {k: v for k, v in cases.items() if k.split(" #")[0] in want}
            runs = {name: [] for name in cases}
            # The first writes after the input files went to fresh page-cache
            # pages; in a VM whose freed memory goes back to the host those cost
            # a host fault each, slowing whichever case runs first.
            w = run_copy(a, big, a.chunk)
            print("# %dM: warm-up copy (not counted): %.0f MB/s"
                  % (size >> 20, w["bytes"] / w["durable_s"] / 1e6))
            for rep in range(a.repeat):
                for name, fn in cases.items():
                    r = fn()
                    if r is None:
                        continue
                    runs[name].append(r)
                    print("  %dM %-15s run %d: durable %.2f s (%.0f MB/s), volume at %.2f s"
                          % (size >> 20, name, rep + 1, r["durable_s"],
                             r["bytes"] / r["durable_s"] / 1e6, r["done_s"]),
                          file=sys.stderr)
            for name in runs:
                if name.startswith("up/4 concat") and not runs[name]:
                    print("# %s: skipped, the server does not advertise concatenation" % name)
            results.append((size, runs))
            for path in [big] + [q[0] for q in quarters]:
                os.unlink(path)
        print_table(results)
        if a.json:
            with open(a.json, "w") as f:
                json.dump({"argv": sys.argv, "results": [[s, r] for s, r in results]}, f,
                          indent=1)
    finally:
        shutil.rmtree(a.work, ignore_errors=True)


if __name__ == "__main__":
    main()
