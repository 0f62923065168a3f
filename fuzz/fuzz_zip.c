/* libFuzzer target: PyTorch checkpoints (ZIP container, data.pkl, storages, legacy format). */
#include "formats/torchzip.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    pcv_torch_file f;
    pcv_error err;
    if (pcv_torch_parse(&f, data, size, "fuzz", &err) == 0)
        pcv_torch_close(&f);
    /* the bare ZIP reader too (any archive, not only torch's) */
    pcv_zip z;
    if (pcv_zip_open(&z, data, size, "fuzz", &err) == 0) {
        for (size_t i = 0; i < z.count; i++)
            pcv_zip_find(&z, (const char *)z.entries[i].name, z.entries[i].namelen);
        pcv_zip_close(&z);
    }
    return 0;
}
