/* perceiver-cl: video and audio files through FFmpeg's libraries (an optional build dependency:
 * libavformat, libavcodec, libswscale, libswresample), and 16-bit PCM WAV files (always). */
#ifndef PERCEIVER_VIDEO_H
#define PERCEIVER_VIDEO_H

#include "perceiver/image.h"

#ifdef __cplusplus
extern "C" {
#endif

/* True when this build reads and writes videos (built with FFmpeg's libraries). */
PCV_API bool pcv_video_available(void);

typedef struct pcv_video pcv_video;

typedef struct pcv_video_info {
    int width, height;
    double fps;           /* average frame rate of the video stream (0 if unknown) */
    int64_t frames;       /* frame count from the container, -1 if unknown */
    bool has_audio;
    int audio_rate, audio_channels;
    char codec[32];
} pcv_video_info;

/* Opens the first video stream of a file; info may be NULL. */
PCV_API pcv_status pcv_video_open(const char *path, pcv_video **out, pcv_video_info *info, pcv_error *err);
/* Decodes the next frame as 8-bit RGB into frame (allocated; free with pcv_image_free). *eof is
 * set (and frame left empty) after the last frame. */
PCV_API pcv_status pcv_video_read(pcv_video *v, pcv_image *frame, bool *eof, pcv_error *err);
PCV_API void pcv_video_close(pcv_video *v);

/* The first audio track of a file (any format FFmpeg reads, or a WAV without FFmpeg), channel 0,
 * resampled to `rate` Hz, as float samples in [-1, 1]; at most max_samples (0: all). *samples is
 * malloc'd. Without FFmpeg only 16-bit PCM WAV at exactly `rate` Hz is read. */
PCV_API pcv_status pcv_audio_load(const char *path, int rate, int64_t max_samples, float **samples, int64_t *n,
                                  pcv_error *err);
/* Writes mono float samples as a 16-bit PCM WAV (clipped to [-1, 1], rounded), atomically. */
PCV_API pcv_status pcv_wav_write(const char *path, const float *samples, int64_t n, int rate, pcv_error *err);

/* A video written frame by frame (the container and codec follow the file name: .mp4 and .mkv get
 * MPEG-4 part 2 at high quality, .gif GIF, ...); the file appears when the writer is closed. */
typedef struct pcv_video_writer pcv_video_writer;
PCV_API pcv_status pcv_video_writer_open(const char *path, int width, int height, double fps, pcv_video_writer **out,
                                         pcv_error *err);
PCV_API pcv_status pcv_video_write(pcv_video_writer *w, const pcv_image *frame, pcv_error *err);
/* Finishes the file (renamed into place); with abandon the partial file is removed instead. */
PCV_API pcv_status pcv_video_writer_close(pcv_video_writer *w, bool abandon, pcv_error *err);

#ifdef __cplusplus
}
#endif
#endif
