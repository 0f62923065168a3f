/* Video and audio files (perceiver/video.h): FFmpeg's libraries when the build has them, and a
 * WAV reader/writer of our own. */
#include "perceiver/video.h"

#include "util/error.h"
#include "util/fileutil.h"
#include "util/guard.h"
#include "util/limits.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- WAV (RIFF, 16-bit PCM) ------------------------------------------------------------------------ */

#ifndef PCV_HAVE_FFMPEG /* with FFmpeg, its WAV demuxer reads them */
static uint32_t le32(const unsigned char *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }
static uint16_t le16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }

/* 16-bit PCM WAV: channel 0 as floats (x / 32768, as the colab scales int16 audio). */
static int wav_load(const char *path, int *rate, int64_t max_samples, float **out, int64_t *n, pcv_error *err)
{
    char *buf = NULL;
    size_t len = 0;
    int rc = pcv_read_file(path, "a WAV file", (size_t)1 << 31, &buf, &len, err);
    if (rc)
        return rc;
    const unsigned char *d = (const unsigned char *)buf;
    rc = PCV_ERR_FORMAT;
    if (len < 12 || memcmp(d, "RIFF", 4) || memcmp(d + 8, "WAVE", 4)) {
        pcv_set_error(err, rc, "%s: not a RIFF/WAVE file", path);
        goto done;
    }
    int fmt = -1, channels = 0, bits = 0;
    const unsigned char *data = NULL;
    size_t data_len = 0;
    for (size_t p = 12; p + 8 <= len;) {
        uint32_t sz = le32(d + p + 4);
        if (sz > len - p - 8)
            sz = (uint32_t)(len - p - 8); /* a truncated last chunk: what is there */
        if (!memcmp(d + p, "fmt ", 4) && sz >= 16) {
            fmt = le16(d + p + 8);
            channels = le16(d + p + 10);
            *rate = (int)le32(d + p + 12);
            bits = le16(d + p + 22);
        } else if (!memcmp(d + p, "data", 4)) {
            data = d + p + 8;
            data_len = sz;
        }
        p += 8 + sz + (sz & 1);
    }
    if (fmt != 1 || bits != 16 || channels < 1 || !data) {
        pcv_set_error(err, PCV_ERR_UNSUPPORTED, "%s: %s; WAV input must be 16-bit PCM%s", path,
                      !data ? "no data chunk" : fmt != 1 ? "not PCM" : "not 16-bit",
                      pcv_video_available() ? "" : " (this build has no FFmpeg for other formats)");
        rc = PCV_ERR_UNSUPPORTED;
        goto done;
    }
    int64_t frames = (int64_t)(data_len / (2 * (size_t)channels));
    if (max_samples > 0 && frames > max_samples)
        frames = max_samples;
    float *s = malloc((size_t)(frames ? frames : 1) * sizeof *s);
    if (!s) {
        rc = pcv_set_error(err, PCV_ERR_OOM, "out of memory");
        goto done;
    }
    for (int64_t i = 0; i < frames; i++)
        s[i] = (float)(int16_t)le16(data + (size_t)i * 2 * (size_t)channels) / 32768.0f;
    *out = s;
    *n = frames;
    rc = 0;
done:
    free(buf);
    return rc;
}
#endif

typedef struct wav_ctx {
    const float *s;
    int64_t n;
    int rate;
} wav_ctx;

static void put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v, p[1] = (unsigned char)(v >> 8), p[2] = (unsigned char)(v >> 16), p[3] = (unsigned char)(v >> 24);
}

static int wav_fill(int fd, void *p)
{
    const wav_ctx *c = p;
    unsigned char h[44];
    uint32_t bytes = (uint32_t)(c->n * 2);
    memcpy(h, "RIFF", 4), put32(h + 4, 36 + bytes), memcpy(h + 8, "WAVEfmt ", 8), put32(h + 16, 16);
    h[20] = 1, h[21] = 0, h[22] = 1, h[23] = 0; /* PCM, mono */
    put32(h + 24, (uint32_t)c->rate), put32(h + 28, (uint32_t)c->rate * 2);
    h[32] = 2, h[33] = 0, h[34] = 16, h[35] = 0;
    memcpy(h + 36, "data", 4), put32(h + 40, bytes);
    if (pcv_write_all(fd, h, sizeof h))
        return -1;
    int16_t chunk[4096];
    for (int64_t i = 0; i < c->n;) {
        int k = 0;
        for (; k < 4096 && i < c->n; k++, i++) {
            float v = c->s[i] < -1 ? -1 : c->s[i] > 1 ? 1 : c->s[i];
            long q = lrintf(v * 32767.0f);
            chunk[k] = (int16_t)q;
        }
        if (pcv_write_all(fd, chunk, (size_t)k * 2))
            return -1;
    }
    return 0;
}

pcv_status pcv_wav_write(const char *path, const float *samples, int64_t n, int rate, pcv_error *err)
{
    if (n < 0 || n > INT32_MAX / 2 || rate < 1)
        return (pcv_status)pcv_set_error(err, PCV_ERR_INPUT, "%s: %lld samples at %d Hz cannot be written as WAV", path,
                                         (long long)n, rate);
    wav_ctx c = {samples, n, rate};
    return (pcv_status)pcv_write_atomic(path, wav_fill, &c, err);
}

#ifdef PCV_HAVE_FFMPEG

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/imgutils.h>
#include <libavutil/opt.h>
#include <libswresample/swresample.h>
#include <libswscale/swscale.h>

bool pcv_video_available(void) { return true; }

static const char *averr(int e, char *buf, size_t cap)
{
    if (av_strerror(e, buf, cap) < 0)
        snprintf(buf, cap, "error %d", e);
    return buf;
}

struct pcv_video {
    AVFormatContext *fmt;
    AVCodecContext *dec;
    struct SwsContext *sws;
    AVPacket *pkt;
    AVFrame *frame;
    int stream;
    bool flushing, done;
    char *path;
};

void pcv_video_close(pcv_video *v)
{
    if (!v)
        return;
    sws_freeContext(v->sws);
    av_frame_free(&v->frame);
    av_packet_free(&v->pkt);
    avcodec_free_context(&v->dec);
    avformat_close_input(&v->fmt);
    free(v->path);
    free(v);
}

/* opens the best stream of a type with its decoder */
static int open_stream(const char *path, AVFormatContext **fmt, enum AVMediaType type, int *index, AVCodecContext **dec,
                       pcv_error *err)
{
    char eb[128];
    /* a FIFO or a device would block FFmpeg's open or read forever: regular files only */
    int fd;
    struct stat sb;
    int rc0 = pcv_open_regular(path, "a video or audio file", &fd, &sb, err);
    if (rc0)
        return rc0;
    close(fd);
    int e = avformat_open_input(fmt, path, NULL, NULL);
    if (e < 0)
        return pcv_set_error(err, PCV_ERR_IO, "%s: cannot open as a video or audio file: %s", path, averr(e, eb, sizeof eb));
    if ((e = avformat_find_stream_info(*fmt, NULL)) < 0)
        return pcv_set_error(err, PCV_ERR_FORMAT, "%s: %s", path, averr(e, eb, sizeof eb));
    const AVCodec *codec = NULL;
    int s = av_find_best_stream(*fmt, type, -1, -1, &codec, 0);
    if (s < 0 || !codec)
        return pcv_set_error(err, PCV_ERR_FORMAT, "%s: no %s stream%s", path, type == AVMEDIA_TYPE_VIDEO ? "video" : "audio",
                             s >= 0 ? " with a decoder in this FFmpeg" : "");
    *dec = avcodec_alloc_context3(codec);
    if (!*dec)
        return pcv_set_error(err, PCV_ERR_OOM, "out of memory");
    if ((e = avcodec_parameters_to_context(*dec, (*fmt)->streams[s]->codecpar)) < 0 ||
        (e = avcodec_open2(*dec, codec, NULL)) < 0)
        return pcv_set_error(err, PCV_ERR_FORMAT, "%s: cannot open the %s decoder: %s", path, codec->name,
                             averr(e, eb, sizeof eb));
    *index = s;
    return 0;
}

pcv_status pcv_video_open(const char *path, pcv_video **out, pcv_video_info *info, pcv_error *err)
{
    *out = NULL;
    av_log_set_level(AV_LOG_ERROR);
    pcv_video *v = calloc(1, sizeof *v);
    if (!v || !(v->path = strdup(path))) {
        free(v);
        return (pcv_status)pcv_set_error(err, PCV_ERR_OOM, "out of memory");
    }
    int rc = open_stream(path, &v->fmt, AVMEDIA_TYPE_VIDEO, &v->stream, &v->dec, err);
    if (!rc && (!(v->pkt = av_packet_alloc()) || !(v->frame = av_frame_alloc())))
        rc = pcv_set_error(err, PCV_ERR_OOM, "out of memory");
    if (!rc && (v->dec->width < 1 || v->dec->height < 1))
        rc = pcv_set_error(err, PCV_ERR_UNSUPPORTED, "%s: video frames of %dx%d are not supported", path, v->dec->width,
                           v->dec->height);
    if (!rc && (int64_t)v->dec->width * v->dec->height > pcv_limits_now()->image_pixels)
        rc = pcv_set_error(err, PCV_ERR_UNSUPPORTED, "%s: video frames of %dx%d pixels, over %s", path, v->dec->width,
                           v->dec->height, PCV_LIMIT_TEXT("image_pixels"));
    if (rc) {
        pcv_video_close(v);
        return (pcv_status)rc;
    }
    if (info) {
        AVStream *st = v->fmt->streams[v->stream];
        memset(info, 0, sizeof *info);
        info->width = v->dec->width;
        info->height = v->dec->height;
        info->fps = st->avg_frame_rate.den ? av_q2d(st->avg_frame_rate) : 0;
        info->frames = st->nb_frames > 0 ? st->nb_frames : -1;
        snprintf(info->codec, sizeof info->codec, "%s", v->dec->codec->name);
        int a = av_find_best_stream(v->fmt, AVMEDIA_TYPE_AUDIO, -1, -1, NULL, 0);
        if (a >= 0) {
            info->has_audio = true;
            info->audio_rate = v->fmt->streams[a]->codecpar->sample_rate;
            info->audio_channels = v->fmt->streams[a]->codecpar->ch_layout.nb_channels;
        }
    }
    *out = v;
    return PCV_OK;
}

pcv_status pcv_video_read(pcv_video *v, pcv_image *frame, bool *eof, pcv_error *err)
{
    char eb[128];
    memset(frame, 0, sizeof *frame);
    *eof = false;
    for (;;) {
        int e = avcodec_receive_frame(v->dec, v->frame);
        if (e == 0)
            break;
        if (e == AVERROR_EOF || v->done) {
            *eof = true;
            return PCV_OK;
        }
        if (e != AVERROR(EAGAIN))
            return (pcv_status)pcv_set_error(err, PCV_ERR_FORMAT, "%s: decoding failed: %s", v->path, averr(e, eb, sizeof eb));
        if (v->flushing) {
            v->done = true;
            continue;
        }
        /* feed the decoder the next packet of our stream */
        for (;;) {
            e = av_read_frame(v->fmt, v->pkt);
            if (e == AVERROR_EOF) {
                avcodec_send_packet(v->dec, NULL);
                v->flushing = true;
                break;
            }
            if (e < 0)
                return (pcv_status)pcv_set_error(err, PCV_ERR_IO, "%s: read error: %s", v->path, averr(e, eb, sizeof eb));
            if (v->pkt->stream_index != v->stream) {
                av_packet_unref(v->pkt);
                continue;
            }
            e = avcodec_send_packet(v->dec, v->pkt);
            av_packet_unref(v->pkt);
            if (e < 0 && e != AVERROR(EAGAIN))
                return (pcv_status)pcv_set_error(err, PCV_ERR_FORMAT, "%s: corrupt video data: %s", v->path,
                                                 averr(e, eb, sizeof eb));
            break;
        }
    }
    AVFrame *f = v->frame;
    if (f->width < 1 || f->height < 1 || (int64_t)f->width * f->height > pcv_limits_now()->image_pixels) {
        av_frame_unref(f); /* the size can change within a stream: every frame is checked */
        return (pcv_status)pcv_set_error(err, PCV_ERR_UNSUPPORTED, "%s: a video frame of %dx%d pixels, over %s", v->path,
                                         f->width, f->height, PCV_LIMIT_TEXT("image_pixels"));
    }
    /* the conversion OpenCV's cv2.VideoCapture makes (its FFmpeg backend asks swscale for BGR24 with
     * SWS_BICUBIC only), so that videos give the pixels DeepMind's colabs read: with
     * SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT, 81 % of the values of a YUV 4:2:0 H.264 clip differed
     * from cv2's (up to 85 levels at colour edges); with these flags none did (RGB24 and BGR24
     * give the same values) */
    v->sws = sws_getCachedContext(v->sws, f->width, f->height, f->format, f->width, f->height, AV_PIX_FMT_RGB24,
                                  SWS_BICUBIC, NULL, NULL, NULL);
    frame->rgb = v->sws ? malloc((size_t)f->width * (size_t)f->height * 3) : NULL;
    if (!frame->rgb) {
        av_frame_unref(f);
        return (pcv_status)pcv_set_error(err, PCV_ERR_OOM, "%s: cannot convert a %dx%d frame", v->path, f->width, f->height);
    }
    frame->width = f->width;
    frame->height = f->height;
    uint8_t *dst[1] = {frame->rgb};
    int stride[1] = {f->width * 3};
    sws_scale(v->sws, (const uint8_t *const *)f->data, f->linesize, 0, f->height, dst, stride);
    av_frame_unref(f);
    return PCV_OK;
}

pcv_status pcv_audio_load(const char *path, int rate, int64_t max_samples, float **samples, int64_t *n, pcv_error *err)
{
    *samples = NULL;
    *n = 0;
    av_log_set_level(AV_LOG_ERROR);
    AVFormatContext *fmt = NULL;
    AVCodecContext *dec = NULL;
    SwrContext *swr = NULL;
    AVPacket *pkt = av_packet_alloc();
    AVFrame *fr = av_frame_alloc();
    float *out = NULL, *tmp = NULL;
    int64_t len = 0, cap = 0;
    int stream = -1, rc = pkt && fr ? 0 : pcv_set_error(err, PCV_ERR_OOM, "out of memory");
    char eb[128];
    if (!rc)
        rc = open_stream(path, &fmt, AVMEDIA_TYPE_AUDIO, &stream, &dec, err);
    if (!rc) {
        int e = swr_alloc_set_opts2(&swr, &dec->ch_layout, AV_SAMPLE_FMT_FLTP, rate, &dec->ch_layout, dec->sample_fmt,
                                    dec->sample_rate, 0, NULL);
        if (e < 0 || (e = swr_init(swr)) < 0)
            rc = pcv_set_error(err, PCV_ERR_FORMAT, "%s: cannot resample the audio to %d Hz: %s", path, rate,
                               averr(e, eb, sizeof eb));
    }
    bool flushed = false;
    while (!rc && !(max_samples > 0 && len >= max_samples)) {
        int e = avcodec_receive_frame(dec, fr);
        const uint8_t **in = NULL;
        int in_n = 0;
        if (e == 0) {
            in = (const uint8_t **)fr->extended_data;
            in_n = fr->nb_samples;
        } else if (e == AVERROR_EOF) {
            if (flushed)
                break;
            flushed = true; /* drain the resampler */
        } else if (e == AVERROR(EAGAIN)) {
            e = av_read_frame(fmt, pkt);
            if (e == AVERROR_EOF) {
                avcodec_send_packet(dec, NULL);
            } else if (e < 0) {
                rc = pcv_set_error(err, PCV_ERR_IO, "%s: read error: %s", path, averr(e, eb, sizeof eb));
            } else {
                if (pkt->stream_index == stream && (e = avcodec_send_packet(dec, pkt)) < 0 && e != AVERROR(EAGAIN))
                    rc = pcv_set_error(err, PCV_ERR_FORMAT, "%s: corrupt audio data: %s", path, averr(e, eb, sizeof eb));
                av_packet_unref(pkt);
            }
            continue;
        } else {
            rc = pcv_set_error(err, PCV_ERR_FORMAT, "%s: audio decoding failed: %s", path, averr(e, eb, sizeof eb));
            break;
        }
        int room = swr_get_out_samples(swr, in_n);
        if (room < 1) {
            av_frame_unref(fr);
            continue;
        }
        int ch = dec->ch_layout.nb_channels;
        float **planes = calloc((size_t)ch, sizeof *planes);
        tmp = planes ? malloc((size_t)room * (size_t)ch * sizeof *tmp) : NULL;
        if (!tmp) {
            free(planes);
            rc = pcv_set_error(err, PCV_ERR_OOM, "out of memory");
            break;
        }
        for (int c = 0; c < ch; c++)
            planes[c] = tmp + (size_t)c * (size_t)room;
        int got = swr_convert(swr, (uint8_t **)planes, room, in, in_n);
        av_frame_unref(fr);
        if (got < 0) {
            free(planes);
            rc = pcv_set_error(err, PCV_ERR_FORMAT, "%s: resampling failed", path);
            break;
        }
        if ((int64_t)(len + got) > pcv_limits_now()->forward_bytes / (int64_t)sizeof(float)) {
            free(planes);
            rc = pcv_set_error(err, PCV_ERR_INPUT, "%s: the audio decodes to more than %lld samples, over %s", path,
                               (long long)(pcv_limits_now()->forward_bytes / (int64_t)sizeof(float)),
                               PCV_LIMIT_TEXT("forward_bytes"));
            break;
        }
        if (len + got > cap) {
            cap = (len + got) * 2;
            float *nb = realloc(out, (size_t)cap * sizeof *nb);
            if (!nb) {
                free(planes);
                rc = pcv_set_error(err, PCV_ERR_OOM, "out of memory");
                break;
            }
            out = nb;
        }
        memcpy(out + len, planes[0], (size_t)got * sizeof *out); /* channel 0, as the colab */
        len += got;
        free(planes);
        free(tmp);
        tmp = NULL;
        if (flushed && got == 0)
            break;
    }
    free(tmp);
    swr_free(&swr);
    av_frame_free(&fr);
    av_packet_free(&pkt);
    avcodec_free_context(&dec);
    avformat_close_input(&fmt);
    if (rc) {
        free(out);
        return (pcv_status)rc;
    }
    if (max_samples > 0 && len > max_samples)
        len = max_samples;
    *samples = out ? out : malloc(sizeof(float));
    *n = len;
    return PCV_OK;
}

/* ---- writing ---- */

struct pcv_video_writer {
    AVFormatContext *fmt;
    AVCodecContext *enc;
    AVStream *st;
    struct SwsContext *sws;
    AVFrame *frame;
    AVPacket *pkt;
    int64_t pts;
    int w, h;
    char *path, *tmp;
    int slot; /* the temporary file, known to the signal handlers */
};

static int drain(pcv_video_writer *w, pcv_error *err)
{
    char eb[128];
    for (;;) {
        int e = avcodec_receive_packet(w->enc, w->pkt);
        if (e == AVERROR(EAGAIN) || e == AVERROR_EOF)
            return 0;
        if (e < 0)
            return pcv_set_error(err, PCV_ERR_IO, "%s: encoding failed: %s", w->path, averr(e, eb, sizeof eb));
        if (w->pkt->duration <= 0) /* one frame: without it the muxer drops the last frame */
            w->pkt->duration = 1;
        av_packet_rescale_ts(w->pkt, w->enc->time_base, w->st->time_base);
        w->pkt->stream_index = w->st->index;
        e = av_interleaved_write_frame(w->fmt, w->pkt);
        if (e < 0)
            return pcv_set_error(err, PCV_ERR_IO, "%s: write failed: %s", w->path, averr(e, eb, sizeof eb));
    }
}

static void writer_free(pcv_video_writer *w)
{
    if (!w)
        return;
    sws_freeContext(w->sws);
    av_frame_free(&w->frame);
    av_packet_free(&w->pkt);
    avcodec_free_context(&w->enc);
    if (w->fmt) {
        if (w->fmt->pb)
            avio_closep(&w->fmt->pb);
        avformat_free_context(w->fmt);
    }
    pcv_tmp_untrack(w->slot);
    free(w->path);
    free(w->tmp);
    free(w);
}

pcv_status pcv_video_writer_open(const char *path, int width, int height, double fps, pcv_video_writer **out,
                                 pcv_error *err)
{
    *out = NULL;
    av_log_set_level(AV_LOG_ERROR);
    char eb[128];
    pcv_video_writer *w = calloc(1, sizeof *w);
    if (w)
        w->slot = -1;
    size_t tl = strlen(path) + 32;
    if (!w || !(w->path = strdup(path)) || !(w->tmp = malloc(tl))) {
        writer_free(w);
        return (pcv_status)pcv_set_error(err, PCV_ERR_OOM, "out of memory");
    }
    snprintf(w->tmp, tl, "%s.tmp.%ld", path, (long)getpid());
    int rc = pcv_check_output(path, err), e;
    if (rc) {
        writer_free(w);
        return (pcv_status)rc;
    }
    pcv_remove_stale(path, false);
    w->slot = pcv_tmp_track(w->tmp, false);
    const AVOutputFormat *of = av_guess_format(NULL, path, NULL);
    if (!of || of->video_codec == AV_CODEC_ID_NONE)
        rc = pcv_set_error(err, PCV_ERR_UNSUPPORTED, "%s: no video container for this file name (use .mp4, .mkv or .avi)",
                           path);
    enum AVCodecID id = of && (!strcmp(of->name, "mp4") || !strcmp(of->name, "matroska") || !strcmp(of->name, "avi"))
                            ? AV_CODEC_ID_MPEG4
                            : of ? of->video_codec : AV_CODEC_ID_NONE;
    const AVCodec *codec = rc ? NULL : avcodec_find_encoder(id);
    if (!rc && !codec)
        rc = pcv_set_error(err, PCV_ERR_UNSUPPORTED, "%s: this FFmpeg has no encoder for the format", path);
    if (!rc && (e = avformat_alloc_output_context2(&w->fmt, of, NULL, w->tmp)) < 0)
        rc = pcv_set_error(err, PCV_ERR_IO, "%s: %s", path, averr(e, eb, sizeof eb));
    if (!rc && (!(w->st = avformat_new_stream(w->fmt, NULL)) || !(w->enc = avcodec_alloc_context3(codec)) ||
                !(w->frame = av_frame_alloc()) || !(w->pkt = av_packet_alloc())))
        rc = pcv_set_error(err, PCV_ERR_OOM, "out of memory");
    if (!rc) {
        int r = (int)lrint(fps > 0 ? fps : 25);
        w->w = (width + 1) & ~1; /* 4:2:0 needs even sizes */
        w->h = (height + 1) & ~1;
        w->enc->width = w->w;
        w->enc->height = w->h;
        w->enc->time_base = (AVRational){1, r};
        w->enc->framerate = (AVRational){r, 1};
        w->enc->pix_fmt = codec->pix_fmts ? codec->pix_fmts[0] : AV_PIX_FMT_YUV420P;
        if (id == AV_CODEC_ID_MPEG4) {
            w->enc->pix_fmt = AV_PIX_FMT_YUV420P;
            w->enc->flags |= AV_CODEC_FLAG_QSCALE;
            w->enc->global_quality = FF_QP2LAMBDA * 2;
        }
        if (w->fmt->oformat->flags & AVFMT_GLOBALHEADER)
            w->enc->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
        w->st->time_base = w->enc->time_base;
        if ((e = avcodec_open2(w->enc, codec, NULL)) < 0 ||
            (e = avcodec_parameters_from_context(w->st->codecpar, w->enc)) < 0)
            rc = pcv_set_error(err, PCV_ERR_UNSUPPORTED, "%s: cannot open the %s encoder: %s", path, codec->name,
                               averr(e, eb, sizeof eb));
    }
    if (!rc) {
        w->frame->format = w->enc->pix_fmt;
        w->frame->width = w->w;
        w->frame->height = w->h;
        if ((e = av_frame_get_buffer(w->frame, 0)) < 0)
            rc = pcv_set_error(err, PCV_ERR_OOM, "out of memory");
    }
    if (!rc && (e = avio_open(&w->fmt->pb, w->tmp, AVIO_FLAG_WRITE)) < 0)
        rc = pcv_set_error(err, PCV_ERR_IO, "%s: cannot create: %s", w->tmp, averr(e, eb, sizeof eb));
    if (!rc && (e = avformat_write_header(w->fmt, NULL)) < 0)
        rc = pcv_set_error(err, PCV_ERR_IO, "%s: %s", path, averr(e, eb, sizeof eb));
    if (rc) {
        if (w->fmt && w->fmt->pb)
            unlink(w->tmp);
        writer_free(w);
        return (pcv_status)rc;
    }
    *out = w;
    return PCV_OK;
}

pcv_status pcv_video_write(pcv_video_writer *w, const pcv_image *img, pcv_error *err)
{
    w->sws = sws_getCachedContext(w->sws, img->width, img->height, AV_PIX_FMT_RGB24, w->w, w->h, w->enc->pix_fmt,
                                  SWS_BICUBIC, NULL, NULL, NULL);
    if (!w->sws || av_frame_make_writable(w->frame) < 0)
        return (pcv_status)pcv_set_error(err, PCV_ERR_OOM, "%s: cannot convert the frame", w->path);
    const uint8_t *src[1] = {img->rgb};
    int stride[1] = {img->width * 3};
    sws_scale(w->sws, src, stride, 0, img->height, w->frame->data, w->frame->linesize);
    w->frame->pts = w->pts++;
    char eb[128];
    int e = avcodec_send_frame(w->enc, w->frame);
    if (e < 0)
        return (pcv_status)pcv_set_error(err, PCV_ERR_IO, "%s: encoding failed: %s", w->path, averr(e, eb, sizeof eb));
    return (pcv_status)drain(w, err);
}

pcv_status pcv_video_writer_close(pcv_video_writer *w, bool abandon, pcv_error *err)
{
    if (!w)
        return PCV_OK;
    int rc = 0;
    if (!abandon) {
        avcodec_send_frame(w->enc, NULL);
        rc = drain(w, err);
        if (!rc && av_write_trailer(w->fmt) < 0)
            rc = pcv_set_error(err, PCV_ERR_IO, "%s: cannot finish the file", w->path);
    }
    if (w->fmt->pb)
        avio_closep(&w->fmt->pb);
    if (!rc && !abandon && (rc = pcv_check_output(w->path, err)) == 0 && rename(w->tmp, w->path) != 0)
        rc = pcv_set_error(err, PCV_ERR_IO, "%s: %s", w->path, strerror(errno));
    if (rc || abandon)
        unlink(w->tmp);
    writer_free(w);
    return (pcv_status)rc;
}

#else /* no FFmpeg */

bool pcv_video_available(void) { return false; }

pcv_status pcv_video_open(const char *path, pcv_video **out, pcv_video_info *info, pcv_error *err)
{
    *out = NULL;
    return (pcv_status)pcv_set_error(err, PCV_ERR_UNSUPPORTED, "%s: this build reads no video files (configure with "
                                     "FFmpeg's libraries: libavformat-dev libavcodec-dev libswscale-dev libswresample-dev)",
                                     path);
}

pcv_status pcv_video_read(pcv_video *v, pcv_image *frame, bool *eof, pcv_error *err)
{
    *eof = true;
    return (pcv_status)pcv_set_error(err, PCV_ERR_UNSUPPORTED, "no video support in this build");
}

void pcv_video_close(pcv_video *v) { (void)v; }

pcv_status pcv_audio_load(const char *path, int rate, int64_t max_samples, float **samples, int64_t *n, pcv_error *err)
{
    int r = 0;
    *samples = NULL;
    int rc = wav_load(path, &r, max_samples, samples, n, err);
    if (!rc && r != rate) {
        free(*samples);
        *samples = NULL;
        return (pcv_status)pcv_set_error(err, PCV_ERR_UNSUPPORTED, "%s: %d Hz audio; %d Hz is needed and this build "
                                         "cannot resample (no FFmpeg)", path, r, rate);
    }
    return (pcv_status)rc;
}

pcv_status pcv_video_writer_open(const char *path, int width, int height, double fps, pcv_video_writer **out,
                                 pcv_error *err)
{
    *out = NULL;
    return (pcv_status)pcv_set_error(err, PCV_ERR_UNSUPPORTED, "%s: this build writes no video files (no FFmpeg)", path);
}

pcv_status pcv_video_write(pcv_video_writer *w, const pcv_image *frame, pcv_error *err)
{
    return (pcv_status)pcv_set_error(err, PCV_ERR_UNSUPPORTED, "no video support in this build");
}

pcv_status pcv_video_writer_close(pcv_video_writer *w, bool abandon, pcv_error *err) { return PCV_OK; }

#endif
