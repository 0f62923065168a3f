/* What the signal handlers need to know (see pcv_install_signal_handlers in perceiver.h):
 * the temporary files and folders being written, and the files mapped into memory.
 *
 * Both tables are fixed arrays that the handlers read without locks or allocation; a path that
 * does not fit, or a full table, only means that this one temporary is not cleaned up on a
 * signal (it is still cleaned up by the next run, see pcv_remove_stale). */
#ifndef PCV_GUARD_H
#define PCV_GUARD_H

#include <stdbool.h>
#include <stddef.h>

/* Registers a temporary file (dir = false) or folder (dir = true) to remove on SIGINT, SIGTERM,
 * SIGHUP, SIGQUIT or SIGBUS. Returns a slot for pcv_tmp_untrack, or -1 if not registered. */
int pcv_tmp_track(const char *path, bool dir);
void pcv_tmp_untrack(int slot);
/* Removes every registered temporary: files first, then (empty) folders. Async-signal-safe. */
void pcv_tmp_remove_all(void);

/* Registers a read-only mapping of path. */
void pcv_map_track(const void *addr, size_t len, const char *path);
void pcv_map_untrack(const void *addr);
/* The file whose mapping holds addr (its byte offset and mapping size in *off, *len), or NULL.
 * Async-signal-safe. */
const char *pcv_map_lookup(const void *addr, size_t *off, size_t *len);

#endif
