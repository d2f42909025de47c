/* file_sync.h: the directory side of durability. fsync(2) of a file makes
 * its bytes durable, not its name: a file created, linked or renamed
 * survives a power cut only once the directory holding the name is synced
 * too. Every file of the state directory a record may name (an upload's
 * .part, a volume, an artifact) goes through here before that record is
 * queued. Blocking: worker pool threads, or start-up before the loop runs. */
#ifndef SRV_FILE_SYNC_H
#define SRV_FILE_SYNC_H

/* fsync of the directory that holds `path` (the part before its last '/',
 * or "." without one). Returns 0 or -errno. */
int srv_fsync_parent(const char* path);

/* Opens `path` read-write, creating it (mode 0644) if it does not exist;
 * a file it creates has its directory synced before this returns. Returns
 * the descriptor (O_CLOEXEC) or -errno (a created file whose directory
 * could not be synced is closed and removed). */
int srv_open_or_create(const char* path);

#endif
