/**
 * What the media job engine accepts and produces. Inputs come from anyone holding the
 * `media:process` scope: every bound here is checked before any work starts (docs/media-jobs.md).
 */

/** Largest picture of an input (video frame or image): 8K UHD, 7680×4320. */
export const MAX_INPUT_PIXELS = 7680 * 4320;
/** Longest input (video or audio), and longest output. */
export const MAX_DURATION_S = 4 * 3600;
/** Streams in one input container: a phone video has 2–4 (video, audio, metadata tracks). */
export const MAX_STREAMS = 16;
/** Output sizes: the long side at most 3840, the short side at most 2160 (4K UHD, either orientation). */
export const MAX_OUTPUT_LONG_SIDE = 3840;
export const MAX_OUTPUT_SHORT_SIDE = 2160;
export const MIN_OUTPUT_SIDE = 16;
/** Images of one `images` input: an hour of frames at 10 fps. */
export const MAX_IMAGES = 36_000;
/** Longest display time of one image. */
export const MAX_IMAGE_DURATION_MS = 10 * 60 * 1000;
/** Recordings one `concat` joins. */
export const MAX_CONCAT_INPUTS = 50;
/** Frames one `thumbnails` job writes (tiles of a sprite included). */
export const MAX_THUMBNAILS = 500;
/** Times one `thumbnails` job may list in `atSeconds` (each is a seek and a decode). */
export const MAX_THUMBNAIL_TIMES = 100;
/** Largest side of a sprite sheet (JPEG allows 65 535; browsers struggle far before). */
export const MAX_SPRITE_SIDE = 16_384;
/** `upscale` by a factor: at most this much. */
export const MAX_UPSCALE_FACTOR = 4;
/** Frame rate of `images-to-video`. */
export const MIN_FPS = 1;
export const MAX_FPS = 60;
/** Video bit rate bounds of `transcode` (kbit/s). */
export const MIN_VIDEO_KBPS = 100;
export const MAX_VIDEO_KBPS = 50_000;
/** Audio bit rate bounds of `extract-audio` (kbit/s). */
export const MIN_AUDIO_KBPS = 32;
export const MAX_AUDIO_KBPS = 320;
/** Length of a relative input name, and its depth (folders). */
export const MAX_NAME_CHARS = 200;
export const MAX_NAME_DEPTH = 6;
