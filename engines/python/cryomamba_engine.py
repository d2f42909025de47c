"""cryomamba_engine: the Python side of cryomambad's exec engine protocol,
version 1 (docs/engines.md), so that an engine is a few lines:

    import cryomamba_engine as ce

    job = ce.Job.from_stdin()          # the request the server sent
    vol = job.volume()                 # numpy memmap of the input (Z, Y, X)
    mask = job.mask()                  # numpy memmap of the output, uint8
    for win in ce.windows(job.shape, size=64, overlap=16):
        mask[win.core] = segment(vol[win.read])[win.inner]
        job.region(win.core)           # the server previews what changed
        job.progress(win.fraction)
    job.stats(components=12)
    # exit 0: the server counts labels, writes the artifact, completes

Only numpy (Debian python3-numpy). Messages go to stdout as JSON lines;
print anything else to stderr (it goes to the job's log), never to stdout.
"""

import json
import math
import os
import sys

import numpy as np

PROTOCOL = 1

# MRC2014 modes this module reads (mode -> numpy dtype, little-endian).
_MRC_DTYPES = {0: np.int8, 1: np.int16, 2: np.float32, 6: np.uint16, 12: np.float16}


class ProtocolError(Exception):
    pass


def _emit(obj, out=None):
    out = out or sys.stdout
    out.write(json.dumps(obj, separators=(",", ":")) + "\n")
    out.flush()


class Window:
    """One sliding window: `read` is the slab to feed the model (the core
    plus up to `overlap` voxels of context each side, clipped at the
    border), `core` the part of the volume it is responsible for (windows'
    cores tile the volume exactly once), `inner` where `core` sits inside
    the slab read; `index`/`count` and `fraction` for progress."""

    def __init__(self, read, core, index, count):
        self.read = read
        self.core = core
        self.inner = tuple(slice(c.start - r.start, c.stop - r.start)
                           for c, r in zip(core, read))
        self.index = index
        self.count = count

    @property
    def fraction(self):
        return (self.index + 1) / self.count


def windows(shape, size=64, overlap=16):
    """Sliding windows over a (Z, Y, X) `shape`, Z then Y then X: cores of
    `size` voxels (clipped at the border), each read with `overlap` voxels
    of context on every side."""
    if isinstance(size, int):
        size = (size,) * 3
    counts = [math.ceil(n / s) for n, s in zip(shape, size)]
    total = counts[0] * counts[1] * counts[2]
    i = 0
    for iz in range(counts[0]):
        for iy in range(counts[1]):
            for ix in range(counts[2]):
                core, read = [], []
                for a, k in enumerate((iz, iy, ix)):
                    lo = k * size[a]
                    hi = min(lo + size[a], shape[a])
                    core.append(slice(lo, hi))
                    read.append(slice(max(0, lo - overlap), min(shape[a], hi + overlap)))
                yield Window(tuple(read), tuple(core), i, total)
                i += 1


class Job:
    """The server's request (docs/engines.md, "The request")."""

    def __init__(self, request, out=None):
        if request.get("protocol") != PROTOCOL:
            raise ProtocolError("this helper speaks protocol %d, the server sent %r"
                                % (PROTOCOL, request.get("protocol")))
        self.request = request
        self.job_id = request["job_id"]
        self.shape = tuple(request["mask"]["shape"])
        self.voxel_size = tuple(request["volume"]["voxel_size"])
        self.volume_path = request["volume"]["path"]
        self.mask_path = request["mask"]["path"]
        self.params = request.get("params", {})
        self.engine_params = self.params.get("engine_params", {})
        self.device = request.get("device")
        self._out = out or sys.stdout

    @classmethod
    def from_stdin(cls):
        line = sys.stdin.readline()
        if not line:
            raise ProtocolError("no request on stdin")
        return cls(json.loads(line))

    # -- data -------------------------------------------------------------
    def volume(self):
        """The input volume as a read-only numpy memmap (Z, Y, X), in its
        MRC mode's dtype. Raises ProtocolError for a shape-only job."""
        if self.volume_path is None:
            raise ProtocolError("this job has no volume (a shape-only job)")
        with open(self.volume_path, "rb") as f:
            head = f.read(1024)
        nx, ny, nz, mode = np.frombuffer(head[:16], dtype="<i4")
        nsymbt = int(np.frombuffer(head[92:96], dtype="<i4")[0])
        if int(mode) not in _MRC_DTYPES:
            raise ProtocolError("MRC mode %d is not supported" % mode)
        dtype = np.dtype(_MRC_DTYPES[int(mode)]).newbyteorder("<")
        return np.memmap(self.volume_path, dtype=dtype, mode="r",
                         offset=1024 + nsymbt, shape=(int(nz), int(ny), int(nx)))

    def mask(self):
        """The output mask as a writable uint8 numpy memmap (Z, Y, X) over
        the file the server created (all zeros). Write labels in place;
        never truncate or replace the file."""
        return np.memmap(self.mask_path, dtype=np.uint8, mode="r+", shape=self.shape)

    # -- messages ---------------------------------------------------------
    def progress(self, fraction, message=None):
        msg = {"type": "progress", "progress": min(1.0, max(0.0, float(fraction)))}
        if message is not None:
            msg["message"] = str(message)
        _emit(msg, self._out)

    def message(self, text):
        _emit({"type": "message", "message": str(text)}, self._out)

    def region(self, box, progress=None, mask=None):
        """Says the labels of `box` are written: a tuple of three slices
        (as Window.core) or [z0, y0, x0, z1, y1, x1]. With `mask` (the
        memmap written), flushes it first so the server reads the labels."""
        if mask is not None:
            mask.flush()
        if isinstance(box, tuple) and isinstance(box[0], slice):
            box = [box[0].start, box[1].start, box[2].start,
                   box[0].stop, box[1].stop, box[2].stop]
        msg = {"type": "region", "box": [int(v) for v in box]}
        if progress is not None:
            msg["progress"] = min(1.0, max(0.0, float(progress)))
        _emit(msg, self._out)

    def stats(self, **stats):
        _emit({"type": "stats", "stats": stats}, self._out)


def log(*args):
    """Prints to stderr: the job's log (its tail is in a failed job's error)."""
    print(*args, file=sys.stderr, flush=True)
