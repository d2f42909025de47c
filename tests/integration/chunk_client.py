"""A reference implementation of the chunks encoding's client side
(docs/protocol.md §11), in Python: reads deltas and chunk messages from a
websockets connection and keeps one dense mask per level. Used by the
integration tests and bench/bench_chunks.py."""

import json
import struct

import numpy as np
import zstandard

EDGE = 32
HEAD = struct.Struct(">4sBBHIIIII")
MAGIC = b"CMK1"


def level_shape(vol, level):
    s = 1 << level
    return tuple(-(-d // s) for d in vol)


def max_downsample(mask, level):
    """The level's mask from the full-resolution one: max over blocks."""
    s = 1 << level
    if s == 1:
        return mask.copy()
    shp = level_shape(mask.shape, level)
    pad = np.zeros((shp[0] * s, shp[1] * s, shp[2] * s), dtype=np.uint8)
    pad[:mask.shape[0], :mask.shape[1], :mask.shape[2]] = mask
    return pad.reshape(shp[0], s, shp[1], s, shp[2], s).max(axis=(1, 3, 5))


class ProtocolError(AssertionError):
    pass


class ChunkClient:
    def __init__(self):
        self.vol = None
        self.masks = {}            # level -> ndarray
        self.versions = {}         # (level, cz, cy, cx) -> version applied
        self.last_complete = None  # (seq, epoch)
        self.deltas = []           # delta data dicts, in order
        self.terminal = None
        self.connected = None
        self.other = []
        self.chunk_bytes = 0
        self.wire_bytes = 0
        self.pending = 0
        self._dctx = zstandard.ZstdDecompressor()

    def mask(self, level):
        if level not in self.masks:
            self.masks[level] = np.zeros(level_shape(self.vol, level), dtype=np.uint8)
        return self.masks[level]

    def feed(self, raw):
        """One WebSocket message. Returns its type ('chunk' for binary)."""
        self.wire_bytes += len(raw)
        if isinstance(raw, bytes):
            self._chunk(raw)
            return "chunk"
        msg = json.loads(raw)
        t = msg["type"]
        if t == "connected":
            self.pending = 0  # a new connection: a delta cut short is over
        if self.pending:
            raise ProtocolError("%s message inside a delta (%d chunks missing)"
                                % (t, self.pending))
        if t == "connected":
            self.connected = msg["data"]
            self.vol = tuple(msg["data"]["volume"]["shape"])
        elif t == "delta":
            d = msg["data"]
            d["seq"] = msg["seq"]
            base = self.last_complete[0] if self.last_complete else 0
            if d["keyframe"] and d["base"] != 0:
                raise ProtocolError("a keyframe with base %d" % d["base"])
            if not d["keyframe"] and d["base"] != base:
                raise ProtocolError("delta base %d, but the last complete seq is %d"
                                    % (d["base"], base))
            if d["keyframe"]:
                for m in self.masks.values():
                    m[...] = 0
                self.versions.clear()
            self.deltas.append(d)
            self.pending = d["chunks"]
            self._maybe_complete()
        elif t in ("completed", "cancelled", "error") and msg["seq"] != 0:
            self.terminal = msg
        else:
            self.other.append(msg)
        return t

    def _maybe_complete(self):
        d = self.deltas[-1]
        if self.pending == 0 and d["complete"]:
            self.last_complete = (d["seq"], d["epoch"])

    def _chunk(self, raw):
        if not self.pending:
            raise ProtocolError("a chunk message outside a delta")
        magic, level, flags, zero, cz, cy, cx, version, plen = HEAD.unpack_from(raw)
        if magic != MAGIC or zero != 0 or plen != len(raw) - HEAD.size:
            raise ProtocolError("bad chunk header")
        key = (level, cz, cy, cx)
        if version < self.versions.get(key, 0):
            raise ProtocolError("chunk %r version %d after %d" % (key, version,
                                                                  self.versions[key]))
        self.versions[key] = version
        m = self.mask(level)
        z0, y0, x0 = cz * EDGE, cy * EDGE, cx * EDGE
        z1, y1, x1 = (min(z0 + EDGE, m.shape[0]), min(y0 + EDGE, m.shape[1]),
                      min(x0 + EDGE, m.shape[2]))
        if z0 >= m.shape[0] or y0 >= m.shape[1] or x0 >= m.shape[2]:
            raise ProtocolError("chunk %r outside the grid" % (key,))
        n = (z1 - z0) * (y1 - y0) * (x1 - x0)
        if flags & 1:
            if plen != 0:
                raise ProtocolError("zero chunk with a payload")
            m[z0:z1, y0:y1, x0:x1] = 0
        else:
            vox = self._dctx.decompress(raw[HEAD.size:], max_output_size=n)
            if len(vox) != n:
                raise ProtocolError("chunk %r: %d voxels, want %d" % (key, len(vox), n))
            m[z0:z1, y0:y1, x0:x1] = np.frombuffer(vox, dtype=np.uint8).reshape(
                z1 - z0, y1 - y0, x1 - x0)
        self.chunk_bytes += len(raw)
        self.pending -= 1
        self._maybe_complete()


async def follow(ws, client, until_terminal=True, on_message=None):
    """Feeds every message of `ws` to `client` until the terminal message
    (or, with until_terminal False, until on_message returns True)."""
    async for raw in ws:
        t = client.feed(raw)
        if on_message is not None and on_message(t, client):
            return
        if until_terminal and client.terminal is not None:
            return
