/* Image decoding: PNG through libpng, JPEG through libjpeg(-turbo), to 8-bit RGB.
 *
 * The target is what `PIL.Image.open(f).convert("RGB")` gives (that is the array transformers'
 * image processors receive); include/perceiver/image.h lists the conversions. Both libraries
 * report fatal errors through callbacks that must not return: ours record the message and
 * longjmp back to the decode function, which frees everything and returns an error; nothing
 * here ever exits the process or prints to stderr. */
#include "perceiver/image.h"
#include "util/error.h"

#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jerror.h>
#include <jpeglib.h>
#include <png.h>

/* Whole files are read into memory first; nothing legitimate comes close to this. */
#define IMG_FILE_MAX ((size_t)1 << 30)

static const char *disp(const char *name)
{
    return name ? name : "<memory>";
}

/* ---- format detection ------------------------------------------------------------------- */

static bool starts(const unsigned char *d, size_t len, const void *magic, size_t n)
{
    return len >= n && memcmp(d, magic, n) == 0;
}

const char *pcv_image_format(const void *data, size_t len)
{
    const unsigned char *d = data;
    if (!d)
        return NULL;
    if (starts(d, len, "\x89PNG\r\n\x1a\n", 8))
        return "PNG";
    if (starts(d, len, "\xff\xd8\xff", 3))
        return "JPEG";
    if (starts(d, len, "GIF87a", 6) || starts(d, len, "GIF89a", 6))
        return "GIF";
    if (len >= 12 && starts(d, len, "RIFF", 4) && memcmp(d + 8, "WEBP", 4) == 0)
        return "WebP";
    if (starts(d, len, "II*\0", 4) || starts(d, len, "MM\0*", 4))
        return "TIFF";
    if (starts(d, len, "\0\0\0\x0cjP  \r\n\x87\n", 12) || starts(d, len, "\xff\x4f\xff\x51", 4))
        return "JPEG 2000";
    if (starts(d, len, "\xff\x0a", 2) || starts(d, len, "\0\0\0\x0cJXL \r\n\x87\n", 12))
        return "JPEG XL";
    if (len >= 12 && memcmp(d + 4, "ftyp", 4) == 0) {
        if (memcmp(d + 8, "avif", 4) == 0 || memcmp(d + 8, "avis", 4) == 0)
            return "AVIF";
        if (memcmp(d + 8, "hei", 3) == 0 || memcmp(d + 8, "mif1", 4) == 0 ||
            memcmp(d + 8, "msf1", 4) == 0)
            return "HEIF";
        return "ISO media (MP4/MOV)";
    }
    if (starts(d, len, "8BPS", 4))
        return "Photoshop PSD";
    if (starts(d, len, "qoif", 4))
        return "QOI";
    if (starts(d, len, "\x76\x2f\x31\x01", 4))
        return "OpenEXR";
    if (starts(d, len, "DDS ", 4))
        return "DDS";
    if (starts(d, len, "%PDF", 4))
        return "PDF";
    if (starts(d, len, "\0\0\1\0", 4) || starts(d, len, "\0\0\2\0", 4))
        return "ICO/CUR";
    if (starts(d, len, "BM", 2))
        return "BMP";
    if (len >= 3 && d[0] == 'P' && d[1] >= '1' && d[1] <= '7' &&
        (d[2] == ' ' || d[2] == '\n' || d[2] == '\r' || d[2] == '\t'))
        return "PNM (PBM/PGM/PPM/PAM)";
    if (starts(d, len, "<svg", 4) || starts(d, len, "<?xml", 5))
        return "SVG/XML";
    return NULL;
}

/* ---- output buffer -------------------------------------------------------------------------- */

/* Checks the size (before anything big is allocated) and allocates the RGB buffer. */
static int alloc_rgb(pcv_image *img, unsigned long w, unsigned long h, const char *name,
                     const char *fmt, pcv_error *err)
{
    if (w == 0 || h == 0)
        return pcv_set_error(err, PCV_ERR_FORMAT, "%s: %s image has zero size (%lux%lu)",
                             disp(name), fmt, w, h);
    if (w > (unsigned long)INT_MAX || h > (unsigned long)INT_MAX ||
        (uint64_t)w * h > (uint64_t)PCV_IMAGE_MAX_PIXELS)
        return pcv_set_error(err, PCV_ERR_UNSUPPORTED,
                             "%s: %s image is %lux%lu pixels, more than the limit of %lld pixels "
                             "(corrupt header, or far too large)",
                             disp(name), fmt, w, h, (long long)PCV_IMAGE_MAX_PIXELS);
    img->rgb = malloc((size_t)w * h * 3);
    if (!img->rgb)
        return pcv_set_error(err, PCV_ERR_OOM, "%s: out of memory for a %lux%lu image",
                             disp(name), w, h);
    img->width = (int)w;
    img->height = (int)h;
    return 0;
}

/* ---- PNG ------------------------------------------------------------------------------------ */

typedef struct png_ctx {
    const unsigned char *data;
    size_t len, pos;
    char msg[256];
} png_ctx;

static void png_on_error(png_structp png, png_const_charp msg)
{
    png_ctx *c = png_get_error_ptr(png);
    snprintf(c->msg, sizeof c->msg, "%s", msg ? msg : "unknown libpng error");
    png_longjmp(png, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg)
{
    /* Warnings (bad ancillary chunks, odd sRGB profiles) do not change the pixels; stay quiet. */
    (void)png;
    (void)msg;
}

static void png_read_mem(png_structp png, png_bytep out, size_t n)
{
    png_ctx *c = png_get_io_ptr(png);
    if (n > c->len - c->pos)
        png_error(png, "unexpected end of file (truncated PNG)");
    memcpy(out, c->data + c->pos, n);
    c->pos += n;
}

/* One decoded row (after libpng's palette/low-bit expansion) to RGB. channels 1..4 and depth
 * 8 or 16; 16-bit samples are big-endian. See image.h for why gray16 clips. */
static void png_row_to_rgb(const unsigned char *in, int w, int channels, int depth,
                           unsigned char *out)
{
    if (depth == 8) {
        for (int x = 0; x < w; x++, in += channels, out += 3) {
            if (channels <= 2) {
                out[0] = out[1] = out[2] = in[0];
            } else {
                out[0] = in[0];
                out[1] = in[1];
                out[2] = in[2];
            }
        }
        return;
    }
    for (int x = 0; x < w; x++, in += 2 * channels, out += 3) {
        if (channels == 1) {
            /* Pillow: "I;16" -> "RGB" clips the 16-bit value to 255. */
            unsigned v = ((unsigned)in[0] << 8) | in[1];
            out[0] = out[1] = out[2] = (unsigned char)(v > 255 ? 255 : v);
        } else if (channels == 2) {
            out[0] = out[1] = out[2] = in[0]; /* Pillow's "LA;16B" keeps the high byte */
        } else {
            out[0] = in[0]; /* "RGB;16B" / "RGBA;16B": high bytes */
            out[1] = in[2];
            out[2] = in[4];
        }
    }
}

static int decode_png(const unsigned char *data, size_t len, const char *name, pcv_image *img,
                      pcv_error *err)
{
    png_ctx ctx = {.data = data, .len = len, .pos = 0, .msg = ""};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &ctx, png_on_error,
                                             png_on_warning);
    if (!png)
        return pcv_set_error(err, PCV_ERR_OOM, "%s: cannot create a libpng reader", disp(name));
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return pcv_set_error(err, PCV_ERR_OOM, "%s: cannot create a libpng reader", disp(name));
    }
    /* Everything that must be freed after a longjmp lives in volatile locals. */
    unsigned char *volatile rows = NULL;
    unsigned char *volatile line = NULL;
    volatile int rc = 0;
    if (setjmp(png_jmpbuf(png))) {
        pcv_image_free(img);
        rc = pcv_set_error(err, PCV_ERR_FORMAT, "%s: corrupt or truncated PNG: %s", disp(name),
                           ctx.msg);
        goto done;
    }
    png_set_read_fn(png, &ctx, png_read_mem);
    /* libpng's own dimension limit (1e6) would reject a 1x2,000,000 strip that we accept; the
     * pixel-count check below is the one that matters. */
    png_set_user_limits(png, PNG_UINT_31_MAX, PNG_UINT_31_MAX);
    png_read_info(png, info);

    png_uint_32 w = 0, h = 0;
    int depth = 0, ctype = 0, interlace = 0;
    png_get_IHDR(png, info, &w, &h, &depth, &ctype, &interlace, NULL, NULL);
    rc = alloc_rgb(img, w, h, name, "PNG", err);
    if (rc)
        goto done;

    /* Palette -> RGB (with tRNS becoming an alpha channel that we drop), gray below 8 bits ->
     * 8 bits scaled to 0..255 (Pillow's "1", "L;2", "L;4" do the same). Gray tRNS is not
     * expanded: transparency never reaches convert("RGB")'s output. 16-bit stays 16-bit so
     * that the row conversion can apply Pillow's per-mode rules. */
    if (ctype == PNG_COLOR_TYPE_PALETTE)
        png_set_palette_to_rgb(png);
    else if (ctype == PNG_COLOR_TYPE_GRAY && depth < 8)
        png_set_expand_gray_1_2_4_to_8(png);
    int passes = png_set_interlace_handling(png);
    png_read_update_info(png, info);
    int channels = png_get_channels(png, info);
    int odepth = png_get_bit_depth(png, info);
    size_t rowbytes = png_get_rowbytes(png, info);
    if (channels < 1 || channels > 4 || (odepth != 8 && odepth != 16) ||
        rowbytes < (size_t)w * (size_t)channels * (size_t)(odepth / 8)) {
        pcv_image_free(img);
        rc = pcv_set_error(err, PCV_ERR_FORMAT,
                           "%s: PNG has an unexpected layout (%d channels, %d bits)", disp(name),
                           channels, odepth);
        goto done;
    }
    if (passes > 1) {
        /* Adam7: libpng needs the whole image in its own layout first. */
        if (rowbytes > SIZE_MAX / h) {
            pcv_image_free(img);
            rc = pcv_set_error(err, PCV_ERR_OOM, "%s: PNG too large", disp(name));
            goto done;
        }
        rows = malloc(rowbytes * h);
        png_bytep *ptrs = rows ? malloc(sizeof(png_bytep) * h) : NULL;
        if (!ptrs) {
            pcv_image_free(img);
            rc = pcv_set_error(err, PCV_ERR_OOM, "%s: out of memory for a %ux%u PNG",
                               disp(name), (unsigned)w, (unsigned)h);
            goto done;
        }
        for (png_uint_32 y = 0; y < h; y++)
            ptrs[y] = rows + y * rowbytes;
        line = (unsigned char *)ptrs; /* freed below, also after a longjmp */
        png_read_image(png, ptrs);
        for (png_uint_32 y = 0; y < h; y++)
            png_row_to_rgb(ptrs[y], (int)w, channels, odepth, img->rgb + (size_t)y * w * 3);
    } else {
        line = malloc(rowbytes);
        if (!line) {
            pcv_image_free(img);
            rc = pcv_set_error(err, PCV_ERR_OOM, "%s: out of memory", disp(name));
            goto done;
        }
        for (png_uint_32 y = 0; y < h; y++) {
            png_read_row(png, line, NULL);
            png_row_to_rgb(line, (int)w, channels, odepth, img->rgb + (size_t)y * w * 3);
        }
    }
    /* The end of the image stream (and the CRCs up to IEND) must be intact too. */
    png_read_end(png, NULL);
done:
    png_destroy_read_struct(&png, &info, NULL);
    free(rows);
    free(line);
    return rc;
}

/* ---- JPEG ----------------------------------------------------------------------------------- */

typedef struct jpeg_err_ctx {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
    char msg[JMSG_LENGTH_MAX];
    int bad_warning; /* a warning that means damaged pixel data */
    int finishing;   /* all scanlines read: only a premature end of file still matters */
    char warn[JMSG_LENGTH_MAX];
} jpeg_err_ctx;

static void jpeg_on_error(j_common_ptr cinfo)
{
    jpeg_err_ctx *e = (jpeg_err_ctx *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, e->msg);
    longjmp(e->jb, 1);
}

static void jpeg_on_message(j_common_ptr cinfo, int level)
{
    if (level >= 0)
        return; /* trace messages */
    jpeg_err_ctx *e = (jpeg_err_ctx *)cinfo->err;
    int code = cinfo->err->msg_code;
    /* Junk bytes between markers, an odd ICC or Adobe/JFIF version leave the pixels intact;
     * the rest (premature end of file, bad Huffman/arithmetic codes, missing restart markers)
     * mean that libjpeg is about to invent pixels. */
    if (code == JWRN_EXTRANEOUS_DATA || code == JWRN_ADOBE_XFORM || code == JWRN_JFIF_MAJOR ||
        code == JWRN_BOGUS_ICC || (e->finishing && code != JWRN_JPEG_EOF))
        return;
    if (!e->bad_warning) {
        e->bad_warning = code;
        (*cinfo->err->format_message)(cinfo, e->warn);
    }
}

static void jpeg_on_output(j_common_ptr cinfo)
{
    (void)cinfo; /* never print */
}

static int decode_jpeg(const unsigned char *data, size_t len, const char *name, pcv_image *img,
                       pcv_error *err)
{
    struct jpeg_decompress_struct cinfo;
    jpeg_err_ctx jerr;
    memset(&jerr, 0, sizeof jerr);
    cinfo.err = jpeg_std_error(&jerr.pub);
    jerr.pub.error_exit = jpeg_on_error;
    jerr.pub.emit_message = jpeg_on_message;
    jerr.pub.output_message = jpeg_on_output;
    unsigned char *volatile row = NULL;
    volatile int rc = 0;
    volatile int created = 0;
    if (setjmp(jerr.jb)) {
        pcv_image_free(img);
        rc = pcv_set_error(err, PCV_ERR_FORMAT, "%s: corrupt or truncated JPEG: %s", disp(name),
                           jerr.msg);
        goto done;
    }
    jpeg_create_decompress(&cinfo);
    created = 1;
    jpeg_mem_src(&cinfo, data, (unsigned long)len);
    if (jpeg_read_header(&cinfo, TRUE) != JPEG_HEADER_OK) {
        rc = pcv_set_error(err, PCV_ERR_FORMAT, "%s: JPEG holds tables only, no image",
                           disp(name));
        goto done;
    }
    if (jerr.bad_warning) {
        rc = pcv_set_error(err, PCV_ERR_FORMAT, "%s: corrupt or truncated JPEG: %s", disp(name),
                           jerr.warn);
        goto done;
    }
    int nc = cinfo.num_components;
    if (nc == 1)
        cinfo.out_color_space = JCS_GRAYSCALE;
    else if (nc == 3)
        cinfo.out_color_space = JCS_RGB; /* from YCbCr or RGB, as the file says */
    else if (nc == 4)
        cinfo.out_color_space = JCS_CMYK; /* from CMYK or YCCK */
    else {
        rc = pcv_set_error(err, PCV_ERR_UNSUPPORTED,
                           "%s: JPEG with %d colour components is not supported (1, 3 or 4)",
                           disp(name), nc);
        goto done;
    }
    /* Pillow's decoder: default (ISLOW) DCT and fancy upsampling, full scale. */
    cinfo.dct_method = JDCT_ISLOW;
    cinfo.do_fancy_upsampling = TRUE;
    cinfo.scale_num = cinfo.scale_denom = 1;
    rc = alloc_rgb(img, cinfo.image_width, cinfo.image_height, name, "JPEG", err);
    if (rc)
        goto done;
    jpeg_start_decompress(&cinfo);
    int oc = cinfo.output_components;
    if (cinfo.output_width != (JDIMENSION)img->width ||
        cinfo.output_height != (JDIMENSION)img->height || oc != (nc == 3 ? 3 : nc)) {
        pcv_image_free(img);
        rc = pcv_set_error(err, PCV_ERR_FORMAT, "%s: JPEG decoder output has an unexpected shape",
                           disp(name));
        goto done;
    }
    row = malloc((size_t)img->width * (size_t)oc);
    if (!row) {
        pcv_image_free(img);
        rc = pcv_set_error(err, PCV_ERR_OOM, "%s: out of memory", disp(name));
        goto done;
    }
    while (cinfo.output_scanline < cinfo.output_height) {
        unsigned char *out = img->rgb + (size_t)cinfo.output_scanline * img->width * 3;
        JSAMPROW rp = row;
        if (jpeg_read_scanlines(&cinfo, &rp, 1) != 1) {
            pcv_image_free(img);
            rc = pcv_set_error(err, PCV_ERR_FORMAT, "%s: JPEG decoder stalled", disp(name));
            goto done;
        }
        const unsigned char *in = row;
        if (oc == 1) {
            for (int x = 0; x < img->width; x++, out += 3)
                out[0] = out[1] = out[2] = in[x];
        } else if (oc == 3) {
            memcpy(out, in, (size_t)img->width * 3);
        } else {
            /* Pillow reads every 4-component JPEG as Adobe-style inverted CMYK ("CMYK;I"),
             * then converts CMYK -> RGB as R = (255-K) - round(C*(255-K)/255) on the inverted
             * values. With the stored (non-inverted) c, k that is k - round((255-c)*k/255);
             * the rounding is Pillow's MULDIV255: t = a*b + 128, ((t >> 8) + t) >> 8. */
            for (int x = 0; x < img->width; x++, in += 4, out += 3) {
                unsigned k = in[3];
                for (int c = 0; c < 3; c++) {
                    unsigned t = (255u - in[c]) * k + 128u;
                    out[c] = (unsigned char)(k - (((t >> 8) + t) >> 8));
                }
            }
        }
        if (jerr.bad_warning) {
            pcv_image_free(img);
            rc = pcv_set_error(err, PCV_ERR_FORMAT, "%s: corrupt or truncated JPEG: %s",
                               disp(name), jerr.warn);
            goto done;
        }
    }
    /* All pixels are in. A file that ends before its EOI marker is still refused, as Pillow
     * refuses it ("image file is truncated"); bytes after EOI are ignored by both. */
    jerr.finishing = 1;
    jpeg_finish_decompress(&cinfo);
    if (jerr.bad_warning) {
        pcv_image_free(img);
        rc = pcv_set_error(err, PCV_ERR_FORMAT, "%s: truncated JPEG: %s", disp(name), jerr.warn);
        goto done;
    }
done:
    if (created)
        jpeg_destroy_decompress(&cinfo);
    free(row);
    return rc;
}

/* ---- entry points --------------------------------------------------------------------------- */

void pcv_image_free(pcv_image *img)
{
    if (!img)
        return;
    free(img->rgb);
    img->rgb = NULL;
    img->width = img->height = 0;
}

static int decode(const void *data, size_t len, const char *name, pcv_image *img, pcv_error *err);

/* ---- EXIF orientation ---------------------------------------------------------------------- *
 * What PIL.ImageOps.exif_transpose reads (Pillow 13, Image.getexif): the Orientation tag (0x0112)
 * of IFD0 of the EXIF block (JPEG: the APP1 "Exif\0\0" segments, concatenated; PNG: the eXIf
 * chunk, or a "Raw profile type exif" tEXt chunk), the first entry with that tag; only when there
 * is none, the first "tiff:Orientation" digit of the XMP packet (JPEG: the last APP1 XMP
 * segment; PNG: an uncompressed "XML:com.adobe.xmp" iTXt chunk). Values other than 2..8 leave
 * the image as stored, as does an unreadable EXIF block. */

static uint32_t rd16(const unsigned char *p, bool be) { return be ? (uint32_t)p[0] << 8 | p[1] : (uint32_t)p[1] << 8 | p[0]; }
static uint32_t rd32(const unsigned char *p, bool be)
{
    return be ? (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]
              : (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

/* The Orientation value in a TIFF structure t[n] (after any "Exif\0\0"); -1 without the tag. */
static int tiff_orientation(const unsigned char *t, size_t n)
{
    if (n < 8 || !((t[0] == 'I' && t[1] == 'I') || (t[0] == 'M' && t[1] == 'M')))
        return -1;
    bool be = t[0] == 'M';
    if (rd16(t + 2, be) != 42)
        return -1;
    uint32_t ifd = rd32(t + 4, be);
    if (ifd > n || n - ifd < 2)
        return -1;
    uint32_t count = rd16(t + ifd, be);
    for (uint32_t i = 0; i < count; i++) {
        size_t e = (size_t)ifd + 2 + (size_t)i * 12;
        if (e + 12 > n)
            return -1;
        if (rd16(t + e, be) != 0x0112)
            continue;
        uint32_t type = rd16(t + e + 2, be), cnt = rd32(t + e + 4, be);
        size_t unit = type == 1 || type == 6 ? 1 : type == 3 || type == 8 ? 2 : type == 4 || type == 9 ? 4 : 0;
        if (unit == 0 || cnt == 0) /* not an integer in Pillow either */
            return 0;
        /* a value of more than 4 bytes lies at an offset; Pillow skips a tag whose data is
         * outside the block, and keeps the first of several values (with a warning) */
        const unsigned char *v = t + e + 8;
        if ((uint64_t)cnt * unit > 4) {
            uint32_t off = rd32(v, be);
            if ((uint64_t)off + (uint64_t)cnt * unit > n)
                continue;
            v = t + off;
        }
        uint32_t u = unit == 1 ? v[0] : unit == 2 ? rd16(v, be) : rd32(v, be);
        return u <= 8 ? (int)u : 0;
    }
    return -1;
}

static int exif_block_orientation(const unsigned char *d, size_t n)
{
    for (int k = 0; k < 2 && n >= 6 && memcmp(d, "Exif\0\0", 6) == 0; k++) /* Pillow strips one or two */
        d += 6, n -= 6;
    return tiff_orientation(d, n);
}

/* Pillow's re.search(r'tiff:Orientation(="|>)([0-9])', xmp); -1 without a match. */
static int xmp_orientation(const unsigned char *x, size_t n)
{
    static const char key[] = "tiff:Orientation";
    const size_t k = sizeof key - 1;
    for (size_t i = 0; i + k < n; i++) {
        if (memcmp(x + i, key, k) != 0)
            continue;
        size_t j = i + k;
        if (j + 2 < n && x[j] == '=' && x[j + 1] == '"' && x[j + 2] >= '0' && x[j + 2] <= '9')
            return x[j + 2] - '0';
        if (j + 1 < n && x[j] == '>' && x[j + 1] >= '0' && x[j + 1] <= '9')
            return x[j + 1] - '0';
    }
    return -1;
}

static int hexval(int c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* The EXIF block of a "Raw profile type exif" text ("\nexif\n   LEN\nHEX..."): hex from line 4 on. */
static int raw_profile_orientation(const unsigned char *t, size_t n)
{
    size_t i = 0;
    for (int nl = 0; i < n && nl < 3; i++)
        nl += t[i] == '\n';
    unsigned char *b = malloc(n / 2 + 1);
    if (!b)
        return -1;
    size_t m = 0;
    int hi = -1;
    for (; i < n; i++) {
        int v = hexval(t[i]);
        if (v < 0)
            continue;
        if (hi < 0) {
            hi = v;
        } else {
            b[m++] = (unsigned char)(hi << 4 | v);
            hi = -1;
        }
    }
    int o = exif_block_orientation(b, m);
    free(b);
    return o;
}

static int jpeg_orientation(const unsigned char *d, size_t n)
{
    unsigned char *exif = NULL;
    size_t exif_len = 0;
    const unsigned char *xmp = NULL;
    size_t xmp_len = 0;
    static const char xmp_id[] = "http://ns.adobe.com/xap/1.0/"; /* + its NUL */
    for (size_t p = 2; p + 4 <= n;) {
        unsigned m = d[p + 1];
        if (d[p] != 0xFF || m == 0xFF) { /* fill bytes between markers */
            p++;
            continue;
        }
        if ((m >= 0xD0 && m <= 0xD8) || m == 0x01) { /* markers without a length */
            p += 2;
            continue;
        }
        if (m == 0xDA || m == 0xD9) /* start of scan: no more header segments */
            break;
        size_t len = (size_t)d[p + 2] << 8 | d[p + 3];
        if (len < 2 || len > n - p - 2)
            break;
        const unsigned char *s = d + p + 4;
        size_t sl = len - 2;
        if (m == 0xE1 && sl >= 6 && memcmp(s, "Exif\0\0", 6) == 0) {
            const unsigned char *part = exif ? s + 6 : s; /* later segments continue the first */
            size_t pl = exif ? sl - 6 : sl;
            unsigned char *e = realloc(exif, exif_len + pl + 1);
            if (e) {
                exif = e;
                memcpy(exif + exif_len, part, pl);
                exif_len += pl;
            }
        } else if (m == 0xE1 && sl >= sizeof xmp_id && memcmp(s, xmp_id, sizeof xmp_id) == 0) {
            xmp = s + sizeof xmp_id;
            xmp_len = sl - sizeof xmp_id;
        }
        p += 2 + len;
    }
    int o = exif ? exif_block_orientation(exif, exif_len) : -1;
    free(exif);
    return o < 0 && xmp ? xmp_orientation(xmp, xmp_len) : o;
}

static int png_orientation(const unsigned char *d, size_t n)
{
    int exif = -1, raw = -1, xmp = -1;
    bool have_exif = false, have_raw = false;
    for (size_t p = 8; p + 12 <= n;) {
        size_t len = (size_t)d[p] << 24 | (size_t)d[p + 1] << 16 | (size_t)d[p + 2] << 8 | d[p + 3];
        if (len > n - p - 12)
            break;
        const unsigned char *type = d + p + 4, *s = d + p + 8;
        if (!memcmp(type, "eXIf", 4)) {
            exif = tiff_orientation(s, len);
            have_exif = true;
        } else if (!memcmp(type, "tEXt", 4) && len >= 22 && !memcmp(s, "Raw profile type exif\0", 22)) {
            raw = raw_profile_orientation(s + 22, len - 22);
            have_raw = true;
        } else if (!memcmp(type, "iTXt", 4) && len > 20 && !memcmp(s, "XML:com.adobe.xmp\0", 18) && s[18] == 0) {
            /* keyword\0, compression flag 0, method, language\0, translated keyword\0, text */
            size_t i = 20;
            for (int z = 0; z < 2 && i < len; i++)
                z += s[i] == 0;
            xmp = xmp_orientation(s + i, len - i);
        } else if (!memcmp(type, "IEND", 4)) {
            break;
        }
        p += 12 + len;
    }
    int o = have_exif ? exif : have_raw ? raw : -1;
    return o < 0 ? xmp : o;
}

int pcv_image_orientation(const void *data, size_t len)
{
    const char *fmt = pcv_image_format(data, len);
    int o = !fmt ? 0 : !strcmp(fmt, "JPEG") ? jpeg_orientation(data, len) : !strcmp(fmt, "PNG") ? png_orientation(data, len) : 0;
    return o >= 1 && o <= 8 ? o : 1;
}

/* PIL.Image.transpose for orientation o: the stored image turned upright. */
static int orient(pcv_image *img, int o, const char *name, pcv_error *err)
{
    if (o <= 1 || o > 8)
        return 0;
    int W = img->width, H = img->height;
    bool swap = o >= 5;
    int ow = swap ? H : W, oh = swap ? W : H;
    unsigned char *out = malloc((size_t)W * H * 3);
    if (!out)
        return pcv_set_error(err, PCV_ERR_OOM, "%s: out of memory turning the image upright", disp(name));
    for (int y = 0; y < oh; y++)
        for (int x = 0; x < ow; x++) {
            int sx, sy;
            switch (o) {
            case 2: sx = W - 1 - x, sy = y; break;          /* FLIP_LEFT_RIGHT */
            case 3: sx = W - 1 - x, sy = H - 1 - y; break;  /* ROTATE_180 */
            case 4: sx = x, sy = H - 1 - y; break;          /* FLIP_TOP_BOTTOM */
            case 5: sx = y, sy = x; break;                  /* TRANSPOSE */
            case 6: sx = y, sy = H - 1 - x; break;          /* ROTATE_270 (90 clockwise) */
            case 7: sx = W - 1 - y, sy = H - 1 - x; break;  /* TRANSVERSE */
            default: sx = W - 1 - y, sy = x; break;         /* 8: ROTATE_90 (counter-clockwise) */
            }
            memcpy(out + ((size_t)y * ow + x) * 3, img->rgb + ((size_t)sy * W + sx) * 3, 3);
        }
    free(img->rgb);
    img->rgb = out;
    img->width = ow;
    img->height = oh;
    return 0;
}

pcv_status pcv_image_load_memory(const void *data, size_t len, const char *name, pcv_image *img,
                          pcv_error *err)
{
    return pcv_image_load_memory_ex(data, len, name, NULL, img, err);
}

pcv_status pcv_image_load_memory_ex(const void *data, size_t len, const char *name,
                                    const pcv_image_load_options *opt, pcv_image *img, pcv_error *err)
{
    if (!img)
        return pcv_set_error(err, PCV_ERR_INPUT, "pcv_image_load_memory: img is NULL");
    int rc = decode(data, len, name, img, err);
    if (!rc && !(opt && opt->ignore_exif_orientation))
        rc = orient(img, pcv_image_orientation(data, len), name, err);
    if (rc)
        pcv_image_free(img);
    return (pcv_status)rc;
}

static int decode(const void *data, size_t len, const char *name, pcv_image *img, pcv_error *err)
{
    img->width = img->height = 0;
    img->rgb = NULL;
    if (!data && len)
        return pcv_set_error(err, PCV_ERR_INPUT, "%s: no data", disp(name));
    if (len == 0)
        return pcv_set_error(err, PCV_ERR_FORMAT, "%s: empty file, not an image", disp(name));
    const char *fmt = pcv_image_format(data, len);
    if (!fmt) {
        const unsigned char *d = data;
        char hex[3 * 8 + 1] = "";
        for (size_t i = 0; i < len && i < 8; i++)
            snprintf(hex + 3 * i, sizeof hex - 3 * i, "%s%02x", i ? " " : "", d[i]);
        return pcv_set_error(err, PCV_ERR_UNSUPPORTED,
                             "%s: not a PNG or JPEG image (unrecognised leading bytes %s)",
                             disp(name), hex);
    }
    if (strcmp(fmt, "PNG") == 0)
        return decode_png(data, len, name, img, err);
    if (strcmp(fmt, "JPEG") == 0)
        return decode_jpeg(data, len, name, img, err);
    return pcv_set_error(err, PCV_ERR_UNSUPPORTED,
                         "%s: %s images are not supported (only PNG and JPEG); convert it first",
                         disp(name), fmt);
}

pcv_status pcv_image_load(const char *path, pcv_image *img, pcv_error *err)
{
    return pcv_image_load_ex(path, NULL, img, err);
}

pcv_status pcv_image_load_ex(const char *path, const pcv_image_load_options *opt, pcv_image *img, pcv_error *err)
{
    if (!img)
        return pcv_set_error(err, PCV_ERR_INPUT, "pcv_image_load: img is NULL");
    img->width = img->height = 0;
    img->rgb = NULL;
    if (!path)
        return pcv_set_error(err, PCV_ERR_INPUT, "pcv_image_load: path is NULL");
    FILE *f = fopen(path, "rb");
    if (!f)
        return pcv_set_error(err, PCV_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0) {
        int e = errno;
        fclose(f);
        return pcv_set_error(err, PCV_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        fclose(f);
        return pcv_set_error(err, PCV_ERR_IO, "%s: not a regular file%s", path,
                             S_ISDIR(st.st_mode) ? " (a directory)" : "");
    }
    if ((uint64_t)st.st_size > IMG_FILE_MAX) {
        fclose(f);
        return pcv_set_error(err, PCV_ERR_UNSUPPORTED, "%s: file of %lld bytes is too large",
                             path, (long long)st.st_size);
    }
    size_t len = (size_t)st.st_size;
    unsigned char *buf = malloc(len ? len : 1);
    if (!buf) {
        fclose(f);
        return pcv_set_error(err, PCV_ERR_OOM, "%s: out of memory reading %zu bytes", path, len);
    }
    size_t got = len ? fread(buf, 1, len, f) : 0;
    int rerr = ferror(f);
    fclose(f);
    if (got != len || rerr) {
        free(buf);
        return pcv_set_error(err, PCV_ERR_IO, "%s: read error (%zu of %zu bytes)", path, got,
                             len);
    }
    int rc = pcv_image_load_memory_ex(buf, len, path, opt, img, err);
    free(buf);
    return (pcv_status)rc;
}
