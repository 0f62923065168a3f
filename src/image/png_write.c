/* Writing 8-bit RGB PNG files (libpng), atomically. */
#include "perceiver/image.h"

#include "util/error.h"
#include "util/fileutil.h"

#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

typedef struct png_out {
    const pcv_image *img;
    char msg[256];
} png_out;

static void on_error(png_structp png, png_const_charp msg)
{
    png_out *o = png_get_error_ptr(png);
    snprintf(o->msg, sizeof o->msg, "%s", msg);
    png_longjmp(png, 1);
}

static void on_warning(png_structp png, png_const_charp msg) { (void)png, (void)msg; }

static int png_fill(int fd, void *p)
{
    png_out *o = p;
    FILE *f = fdopen(dup(fd), "wb");
    if (!f)
        return -1;
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, o, on_error, on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    int rc = -1;
    if (png && info && !setjmp(png_jmpbuf(png))) {
        png_init_io(png, f);
        png_set_IHDR(png, info, (png_uint_32)o->img->width, (png_uint_32)o->img->height, 8, PNG_COLOR_TYPE_RGB,
                     PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
        png_write_info(png, info);
        for (int y = 0; y < o->img->height; y++)
            png_write_row(png, o->img->rgb + (size_t)y * (size_t)o->img->width * 3);
        png_write_end(png, NULL);
        rc = 0;
    }
    png_destroy_write_struct(png ? &png : NULL, info ? &info : NULL);
    if (fclose(f) != 0)
        rc = -1;
    return rc;
}

pcv_status pcv_image_save_png(const char *path, const pcv_image *img, pcv_error *err)
{
    if (!img || img->width < 1 || img->height < 1 || !img->rgb)
        return (pcv_status)pcv_set_error(err, PCV_ERR_INPUT, "%s: no image to write", path);
    png_out o = {.img = img};
    int rc = pcv_write_atomic(path, png_fill, &o, err);
    if (rc && o.msg[0])
        pcv_set_error(err, PCV_ERR_IO, "%s: PNG encoder: %s", path, o.msg);
    return (pcv_status)rc;
}
