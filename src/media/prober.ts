import ffmpeg, { type FfprobeData } from 'fluent-ffmpeg';

/**
 * What ffprobe reads back from a recording. Durations are ffprobe's: for fragmented MP4 they run
 * from time 0 to the end of the last sample, so a track starting late (`*StartMs`) counts its
 * start in its duration.
 */
export interface RecordingProbe {
  durationMs: number;
  /** Frames ffprobe decoded (`-count_frames`), not what the container claims. */
  videoFrames: number;
  width: number;
  height: number;
  videoCodec: string;
  pixFmt: string;
  videoStartMs: number;
  audioCodec: string | null;
  audioDurationMs: number | null;
  audioStartMs: number | null;
}

/**
 * Reads back a recording with ffprobe, decoding every frame to count them: that proves the file
 * decodes end to end, at a cost of about 1 s per 1000 frames of 640×480 (3 s for 5 min at 10 fps).
 */
export async function probeRecording(path: string, ffprobePath: string): Promise<RecordingProbe> {
  const data = await new Promise<FfprobeData>((resolve, reject) => {
    // setFfprobePath sets fluent-ffmpeg's process-wide path: fine, all probes use the same one.
    ffmpeg(path)
      .setFfprobePath(ffprobePath)
      .ffprobe(['-v', 'error', '-count_frames'], (err: Error | null, probed) => {
        if (err) {
          reject(new Error(`ffprobe could not read ${path}: ${err.message}`, { cause: err }));
        } else {
          resolve(probed);
        }
      });
  });
  const video = data.streams.find((stream) => stream.codec_type === 'video');
  if (!video) {
    throw new Error(`${path} has no video stream`);
  }
  const audio = data.streams.find((stream) => stream.codec_type === 'audio') ?? null;
  return {
    durationMs: Math.round(seconds(data.format.duration) * 1000),
    videoFrames: Math.round(seconds(video.nb_read_frames)),
    width: video.width ?? 0,
    height: video.height ?? 0,
    videoCodec: video.codec_name ?? 'unknown',
    pixFmt: video.pix_fmt ?? 'unknown',
    videoStartMs: Math.round(seconds(video.start_time) * 1000),
    audioCodec: audio?.codec_name ?? null,
    audioDurationMs: audio ? Math.round(seconds(audio.duration) * 1000) : null,
    audioStartMs: audio ? Math.round(seconds(audio.start_time) * 1000) : null,
  };
}

/** fluent-ffmpeg parses numeric fields to numbers, but leaves "N/A" and negatives as strings. */
function seconds(value: unknown): number {
  const parsed = typeof value === 'number' ? value : Number.parseFloat(String(value));
  return Number.isFinite(parsed) ? parsed : 0;
}
