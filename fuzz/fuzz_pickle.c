/* libFuzzer target: the safe pickle reader, then the Haiku tree walk and renamer on whatever it
 * produced. Any crash, leak, overread or unbounded allocation is a bug. */
#include "formats/haiku.h"
#include "formats/pickle.h"
#include "model/arch.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    pk_doc d;
    pcv_error err;
    /* torch files allow persistent ids: fuzz both modes, chosen by the first byte */
    pk_options o = {.name = "fuzz", .allow_persistent = size && (data[0] & 1), .max_alloc = 8u << 20};
    if (pk_load(&d, data, size, &o, &err) != 0)
        return 0;
    pk_resolve_tensors(&d, &err); /* storages have no data: must fail cleanly */
    hk_param *p = NULL;
    size_t n = 0;
    if (hk_flatten(&d, "fuzz", &p, &n, &err) == 0) {
        const char **names = malloc((n ? n : 1) * sizeof *names);
        for (size_t i = 0; names && i < n; i++) {
            char out[256];
            hk_transform t;
            hk_rename(p[i].name, PCV_ARCH_MULTIMODAL, out, sizeof out, &t);
            names[i] = p[i].name;
        }
        if (names)
            pcv_arch_detect(names, n);
        free(names);
        hk_params_free(p, n);
    }
    pk_doc_free(&d);
    return 0;
}
