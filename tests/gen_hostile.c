/* Writes the hostile inputs of issue 12 for the shell tests (tests/cli_hostile.sh) and the fuzz
 * seed corpus, so that no large reproducer is committed:
 *   gen_hostile KIND OUT
 * KIND: dag-pickle, shared-pickle, unbuilt-pickle (see hostile.h);
 *       png-bomb: a 16384x16384 8-bit gray PNG of zeros (268 Mpixels in well under 1 MB);
 *       jpeg-bomb:IN: IN (a baseline JPEG) with its frame header claiming 20000x20000;
 *       ids-20000, ids-1: a safetensors file with input_ids [20000][1] or [1][1];
 *       small-shared-pickle, torch-pickle, torch-zip, torch-zip-dd: small seeds of the fuzz corpus. */
#include "hostile.h"
#include "perceiver/perceiver.h"

#include <png.h>
#include <zlib.h>
#include <stdio.h>
#include <string.h>

static int png_bomb(const char *path)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return 1;
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info || setjmp(png_jmpbuf(png))) {
        fclose(f);
        return 1;
    }
    png_init_io(png, f);
    png_set_compression_level(png, 9);
    png_set_filter(png, 0, PNG_FILTER_NONE);
    const unsigned side = 16384;
    png_set_IHDR(png, info, side, side, 8, PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    unsigned char *row = calloc(side, 1);
    for (unsigned y = 0; row && y < side; y++)
        png_write_row(png, row);
    free(row);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    return fclose(f) != 0;
}

/* Copies a JPEG and sets the height and width of its SOF0/SOF2 frame header. */
static int jpeg_bomb(const char *in, const char *path)
{
    FILE *f = fopen(in, "rb");
    if (!f)
        return 1;
    hbuf b = {0};
    unsigned char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        hb_put(&b, chunk, n);
    fclose(f);
    int done = 0;
    for (size_t i = 2; i + 9 < b.n && !done; i++)
        if (b.p[i] == 0xff && (b.p[i + 1] == 0xc0 || b.p[i + 1] == 0xc2)) {
            b.p[i + 5] = 20000 >> 8, b.p[i + 6] = 20000 & 0xff; /* height */
            b.p[i + 7] = 20000 >> 8, b.p[i + 8] = 20000 & 0xff; /* width */
            done = 1;
        }
    f = fopen(path, "wb");
    int rc = !done || !f || fwrite(b.p, 1, b.n, f) != b.n;
    if (f)
        rc |= fclose(f) != 0;
    free(b.p);
    return rc;
}

static int ids(const char *path, int batch)
{
    int64_t *v = malloc((size_t)batch * sizeof *v);
    for (int i = 0; v && i < batch; i++)
        v[i] = 6 + i % 200;
    pcv_st_entry e = {.name = "input_ids", .dtype = PCV_DT_I64, .ndim = 2, .shape = {batch, 1}, .data = v};
    pcv_error err = {0};
    int rc = v ? pcv_st_write(path, &e, 1, &err) : 1;
    if (rc)
        fprintf(stderr, "%s\n", err.msg);
    free(v);
    return rc != 0;
}

static int write_out(const char *path, const hbuf *b)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(b->p, 1, b->n, f) != b->n || fclose(f) != 0) {
        perror(path);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: gen_hostile KIND OUT\n");
        return 2;
    }
    const char *kind = argv[1];
    if (!strcmp(kind, "png-bomb"))
        return png_bomb(argv[2]);
    if (!strncmp(kind, "jpeg-bomb:", 10))
        return jpeg_bomb(kind + 10, argv[2]);
    if (!strcmp(kind, "ids-20000"))
        return ids(argv[2], 20000);
    if (!strcmp(kind, "ids-1"))
        return ids(argv[2], 1);
    hbuf b = {0};
    if (!strcmp(kind, "dag-pickle"))
        gen_dag_pickle(&b, 7, 16);
    else if (!strcmp(kind, "shared-pickle"))
        gen_shared_array_pickle(&b, 1024, 300);
    else if (!strcmp(kind, "unbuilt-pickle"))
        gen_unbuilt_pickle(&b);
    else if (!strcmp(kind, "small-shared-pickle"))
        gen_shared_array_pickle(&b, 8, 12);
    else if (!strcmp(kind, "torch-pickle"))
        gen_torch_pickle(&b);
    else if (!strcmp(kind, "torch-zip"))
        gen_torch_zip(&b, false, (hb_crc_fn)crc32);
    else if (!strcmp(kind, "torch-zip-dd"))
        gen_torch_zip(&b, true, (hb_crc_fn)crc32);
    else {
        fprintf(stderr, "gen_hostile: unknown kind '%s'\n", kind);
        return 2;
    }
    int rc = write_out(argv[2], &b);
    free(b.p);
    return rc;
}
