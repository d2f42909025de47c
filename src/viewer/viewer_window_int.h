/* viewer_window_int.h: what the main window (viewer_window.c) shares with
 * opening a volume (viewer_open.c): the rows of the metadata panel and how
 * one is set. Private to those two files. Main thread. */
#ifndef VIEWER_WINDOW_INT_H
#define VIEWER_WINDOW_INT_H

#include "viewer/viewer_app.h"

/* The metadata panel's rows, top to bottom. */
enum {
  META_FILE,
  META_SHAPE,
  META_VOXEL,
  META_MODE,
  META_SIZE,
  META_RANGE,
  META_MEAN,
  META_MASK,
  META_COUNT
};

/* Shows `text` as the value of metadata row `row` (META_*). */
void viewer_window_set_meta(viewer_app_t* app, int row, const char* text);

#endif
