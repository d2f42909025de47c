/* viewer_labels.h: full-resolution label volumes (uint8, Z,Y,X, C order)
 * for the overlay: preview masks upsampled by their integer scale with the
 * server's exact alignment (core_shape_upsample_u8: preview voxel (i,j,k)
 * covers volume block [i*s,(i+1)*s) x ... clipped at the border), the final
 * mask read from its MRC artifact, and export as MRC. No GTK; any thread
 * (the viewer calls these on worker threads). */
#ifndef VIEWER_LABELS_H
#define VIEWER_LABELS_H

#include <stddef.h>
#include <stdint.h>

#include "core/shape.h"

/* Upsamples `preview` (shape `pshape`, per-axis factors `scale` Z,Y,X)
 * into `out` (core_shape_voxels(shape) bytes). Returns 0, or -EINVAL when
 * pshape != ceil(shape / scale) on some axis or a factor is 0. */
int viewer_labels_upsample(const uint8_t* preview,
                           const uint32_t pshape[3],
                           const uint32_t scale[3],
                           const core_shape_t* shape,
                           uint8_t* out);

/* Reads a mask MRC (mode 0, shape `shape`) at `path` into `out`
 * (core_shape_voxels(shape) bytes). Returns 0 or a negative errno /
 * -EINVAL with a sentence in `err`. */
int viewer_labels_read_mrc(const char* path,
                           const core_shape_t* shape,
                           uint8_t* out,
                           char* err,
                           size_t err_len);

/* Writes `labels` as an MRC2014 mode-0 file with `voxel_size` (Z,Y,X,
 * Angstrom; <= 0 means 1) and correct dmin/dmax/dmean; written to
 * "path.part" and renamed. Returns 0 or a negative errno. */
int viewer_labels_write_mrc(const char* path,
                            const uint8_t* labels,
                            const core_shape_t* shape,
                            const double voxel_size[3]);

/* Voxels per label value into counts[256]. */
void viewer_labels_histogram(const uint8_t* labels,
                             size_t count,
                             uint64_t counts[256]);

#endif
