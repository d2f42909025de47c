#!/usr/bin/python3
"""example_threshold: an exec engine that segments a tomogram by sliding
windows, as a model wrapper would (docs/engines.md): each 64^3 window
(16 voxels of context) is smoothed (scipy Gaussian), normalised, and
thresholded; dark voxels (cryo-ET: dense matter is dark) become label 1,
and connected blobs of at most `max_blob` voxels become label 2. Params
(engine_params): sigma (1.5), threshold in standard deviations (1.0),
window (64), overlap (16), max_blob (2000)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
from scipy import ndimage  # noqa: E402

import cryomamba_engine as ce  # noqa: E402


def segment(block, sigma, k, max_blob):
    smooth = ndimage.gaussian_filter(block.astype(np.float32), sigma)
    z = (smooth - smooth.mean()) / (smooth.std() + 1e-6)
    fg = z < -k
    labels = fg.astype(np.uint8)
    comp, n = ndimage.label(fg)
    if n:
        sizes = np.bincount(comp.ravel())
        small = sizes <= max_blob
        small[0] = False
        labels[small[comp]] = 2
    return labels


def main():
    job = ce.Job.from_stdin()
    p = job.engine_params
    sigma = float(p.get("sigma", 1.5))
    k = float(p.get("threshold", 1.0))
    vol = job.volume()
    mask = job.mask()
    for win in ce.windows(job.shape, int(p.get("window", 64)), int(p.get("overlap", 16))):
        labels = segment(np.asarray(vol[win.read]), sigma, k, int(p.get("max_blob", 2000)))
        mask[win.core] = labels[win.inner]
        job.region(win.core, progress=win.fraction, mask=mask)
    mask.flush()
    job.stats(windows=win.count, sigma=sigma, threshold=k)


if __name__ == "__main__":
    main()
