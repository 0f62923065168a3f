/* libFuzzer target: PNG and JPEG decoding (libpng / libjpeg behind perceiver-cl's error handling:
 * every failure must come back as an error, never exit, print or longjmp past its cleanup). The
 * image_pixels limit is lowered to 4 Mpixels so that each input stays fast; the limit check
 * itself runs on every header. */
#include "perceiver/image.h"

#include <stdlib.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    pcv_limits l;
    pcv_get_limits(&l);
    l.image_pixels = (int64_t)1 << 22;
    pcv_error err;
    pcv_set_limits(&l, &err);
    return 0;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    pcv_image img;
    pcv_error err;
    (void)pcv_image_format(data, size);
    if (pcv_image_load_memory(data, size, "fuzz", &img, &err) == 0) {
        unsigned sum = 0;
        size_t n = (size_t)img.width * (size_t)img.height * 3;
        for (size_t i = 0; i < n; i += 97)
            sum += img.rgb[i];
        sum += img.rgb[n - 1];
        pcv_image_free(&img);
        if (sum == 0xdeadbeef)
            abort();
    }
    return 0;
}
