/* libFuzzer target: config.json loading (and saving what was loaded). */
#include "fuzz_file.h"
#include "perceiver/perceiver.h"

#include <stdio.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    const char *path = fuzz_write_file("json", data, size);
    pcv_config c;
    pcv_error err;
    if (path && pcv_config_load(&c, path, &err) == 0) {
        char out[300];
        snprintf(out, sizeof out, "%s.out", path);
        pcv_config_save(&c, out, &err);
        unlink(out);
        pcv_config_free(&c);
    }
    if (path)
        unlink(path);
    return 0;
}
