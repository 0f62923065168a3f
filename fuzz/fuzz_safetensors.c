/* libFuzzer target: the safetensors reader (header JSON, offsets, layout) and conversions. */
#include "formats/formats.h"
#include "fuzz_file.h"
#include "perceiver/perceiver.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    const char *path = fuzz_write_file("safetensors", data, size);
    pcv_safetensors st;
    pcv_error err;
    if (path && pcv_st_map(&st, path, &err) == 0) {
        for (int i = 0; i < st.count; i++) {
            const pcv_st_tensor *t = &st.tensors[i];
            if (t->numel > 0 && t->numel < (1 << 20)) {
                float *f = malloc((size_t)t->numel * sizeof *f);
                if (f)
                    pcv_st_to_f32(t, f, &err);
                free(f);
            }
        }
        pcv_st_unmap(&st);
    }
    if (path)
        unlink(path);
    return 0;
}
