/* The safetensors and config readers take a path: fuzz inputs go through a per-process file. */
#ifndef PCV_FUZZ_FILE_H
#define PCV_FUZZ_FILE_H
#include <stdio.h>
#include <unistd.h>

static const char *fuzz_write_file(const char *suffix, const unsigned char *data, size_t size)
{
    static char path[256];
    snprintf(path, sizeof path, "/tmp/pcv-fuzz-%ld.%s", (long)getpid(), suffix);
    FILE *f = fopen(path, "wb");
    if (!f)
        return NULL;
    if (size)
        fwrite(data, 1, size, f);
    fclose(f);
    return path;
}
#endif
