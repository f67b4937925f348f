import { createHash, type Hash } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';
import { WritableStream } from 'node:stream/web';
import {
  EncodedAudioPacketSource,
  EncodedPacket,
  EncodedVideoPacketSource,
  Mp4OutputFormat,
  Output,
  StreamTarget,
  type StreamTargetChunk,
  TextSubtitleSource,
  type OutputSubtitleTrack,
} from 'mediabunny';
import { AAC_LC, AAC_SAMPLE_RATES, audioSpecificConfig } from './adts-stream';
import { avcCodecString } from './h264-stream';
import { cueBlock, type TextCue, WEBVTT_HEADER } from './webvtt';

/**
 * Shortest fragment: a fragment is cut at the first keyframe after this much media, so the
 * encoder's keyframe interval sets what a crash can lose.
 */
const MIN_FRAGMENT_S = 1;

/** Video as the client encoded it, muxed as sent (pass-through recording). */
export interface PassthroughVideo {
  family: 'avc' | 'vp8' | 'vp9';
  /** The session's codec string (`avc1.42001f`, `vp8`, `vp09.00.10.08`). */
  codec: string;
  /** H.264: the avcC the chunks (AVCC, length-prefixed NAL units) decode with. */
  description: Uint8Array | null;
}

export interface LiveMp4Options {
  /** `passthrough` absent: H.264 access units in Annex B from the service's own encoder. */
  video: { width: number; height: number; passthrough?: PassthroughVideo };
  /** `opus`: the client's Opus packets as sent; else raw AAC frames from the service's encoder. */
  audio?: { sampleRate: number; channels: number; opus?: { description: Uint8Array | null } };
}

/**
 * Writes the MP4 file, hashing its bytes as they go out. Fragmented MP4 is written
 * strictly in order, which is what makes the running hash the file's hash.
 */
export class HashedFileSink {
  private readonly hash: Hash = createHash('sha256');
  bytes = 0;

  constructor(private readonly file: FileHandle) {}

  async write(chunk: StreamTargetChunk): Promise<void> {
    if (chunk.position !== this.bytes) {
      throw new Error(`MP4 write at ${chunk.position}, expected ${this.bytes}: not sequential`);
    }
    try {
      // A file system filling up may write part of a chunk and report it without an error: the
      // rest goes in the next call (which then fails with ENOSPC if nothing fits), never a gap.
      const length = chunk.data.byteLength;
      for (let done = 0; done < length;) {
        const { bytesWritten } = await this.file.write(
          chunk.data,
          done,
          length - done,
          chunk.position + done,
        );
        if (bytesWritten === 0) {
          throw new Error(`MP4 write returned 0 bytes at offset ${chunk.position + done}`);
        }
        done += bytesWritten;
      }
    } catch (err) {
      // The stream is errored from here on and never closes its sink: release the file now.
      await this.release();
      throw err;
    }
    this.hash.update(chunk.data);
    this.bytes += chunk.data.byteLength;
  }

  /** Makes the finished file durable before it is reported as a recording. */
  async close(): Promise<void> {
    await this.file.sync();
    await this.file.close();
  }

  async release(): Promise<void> {
    await this.file.close().catch(() => undefined);
  }

  digest(): string {
    return this.hash.digest('hex');
  }
}

/**
 * Muxes H.264 access units (Annex B) from the service's encoder, or a client's compressed chunks
 * as sent (H.264 AVCC, VP8, VP9: pass-through), raw AAC frames or Opus packets, and WebVTT cues into
 * a fragmented MP4 in-process, each sample at its own timestamp (variable frame rate). The file grows fragment by
 * fragment (ftyp+moov, then moof+mdat pairs), so a copy taken at any moment after the first
 * fragment is a playable file of everything up to its last complete fragment.
 *
 * Fragments interleave the audio and video by time: samples of a track that runs ahead wait in
 * memory until the other track reaches their time. With an audio track whose samples stop coming,
 * video piles up in memory and nothing reaches the file until finalize. The text track (`wvtt`,
 * ISO/IEC 14496-30) is the exception: it never holds the others back (see `sparseTextTrack`).
 */
export class LiveMp4Writer {
  private videoConfigured = false;
  private textStarted = false;

  private constructor(
    private readonly output: Output,
    private readonly sink: HashedFileSink,
    private readonly video: EncodedVideoPacketSource,
    private readonly audio: EncodedAudioPacketSource | null,
    private readonly text: TextSubtitleSource,
    private readonly videoOptions: LiveMp4Options['video'],
  ) {}

  static async create(path: string, options: LiveMp4Options): Promise<LiveMp4Writer> {
    const audioConfig = options.audio ? audioDecoderConfig(options.audio) : null;
    const sink = new HashedFileSink(await open(path, 'w'));
    const output = new Output({
      format: new Mp4OutputFormat({
        fastStart: 'fragmented',
        minimumFragmentDuration: MIN_FRAGMENT_S,
      }),
      target: new StreamTarget(
        new WritableStream<StreamTargetChunk>({
          write: (chunk) => sink.write(chunk),
          close: () => sink.close(),
        }),
      ),
    });
    const video = new EncodedVideoPacketSource(options.video.passthrough?.family ?? 'avc');
    output.addVideoTrack(video);
    let audio: EncodedAudioPacketSource | null = null;
    if (audioConfig) {
      audio = new EncodedAudioPacketSource(options.audio?.opus ? 'opus' : 'aac');
      // Configured up front, so no packet needs to carry it, and a session that never sends
      // audio still gets a valid (empty) track.
      output.addAudioTrack(audio, { decoderConfig: audioConfig });
    }
    // Every recording has its text track, with the session's messages or none: whether a session
    // will send one is not known when its file starts.
    const text = new TextSubtitleSource('webvtt');
    const textTrack = output.addSubtitleTrack(text, { name: 'messages' });
    try {
      await output.start();
    } catch (err) {
      await sink.release();
      throw err;
    }
    try {
      sparseTextTrack(output, textTrack);
    } catch (err) {
      await output.cancel().catch(() => undefined);
      await sink.release();
      throw err;
    }
    return new LiveMp4Writer(output, sink, video, audio, text, options.video);
  }

  /**
   * One video sample: an Annex B access unit of the service's encoder, or a client's chunk as sent
   * (pass-through). Resolves when the muxer can take more: await it, that is the writer's
   * backpressure.
   */
  async addVideo(au: Buffer, key: boolean, timestampS: number, durationS: number): Promise<void> {
    const packet = new EncodedPacket(au, key ? 'key' : 'delta', timestampS, durationS);
    if (this.videoConfigured) {
      await this.video.add(packet);
      return;
    }
    const passthrough = this.videoOptions.passthrough;
    if (passthrough) {
      if (!key) {
        throw new Error('the first video chunk must be a key frame');
      }
      this.videoConfigured = true;
      // The sample entry's size is the session's declared coded size; VP8/VP9 chunks that change
      // it carry their own size, which decoders follow.
      await this.video.add(packet, {
        decoderConfig: {
          codec: passthrough.codec,
          codedWidth: this.videoOptions.width,
          codedHeight: this.videoOptions.height,
          ...(passthrough.description ? { description: passthrough.description } : {}),
        },
      });
      return;
    }
    const codec = avcCodecString(au);
    if (!key || !codec) {
      throw new Error('the first video access unit must be a keyframe with an SPS');
    }
    this.videoConfigured = true;
    // No `description`: the packets stay Annex B and the muxer builds the avcC box from them.
    await this.video.add(packet, {
      decoderConfig: {
        codec,
        codedWidth: this.videoOptions.width,
        codedHeight: this.videoOptions.height,
      },
    });
  }

  /** A raw AAC frame (no ADTS header), or an Opus packet. */
  async addAudio(frame: Uint8Array, timestampS: number, durationS: number): Promise<void> {
    if (!this.audio) {
      throw new Error('this recording has no audio track');
    }
    await this.audio.add(new EncodedPacket(frame, 'key', timestampS, durationS));
  }

  /**
   * Cues of the text track, in order of their start; each start at or after the previous one's.
   * The recorder adds them all at the end, from the stored messages; their samples go into the
   * fragments still to be written (the last one), each at its own time.
   */
  async addCues(cues: readonly TextCue[]): Promise<void> {
    // One cue per chunk: mediabunny's WebVTT reader copies the rest of its chunk after each cue,
    // so one chunk of a whole chatty session's cues would cost the square of its length. Its
    // first chunk must start with the WebVTT header.
    for (const cue of cues) {
      await this.text.add(this.textStarted ? cueBlock(cue) : WEBVTT_HEADER + cueBlock(cue));
      this.textStarted = true;
    }
  }

  /** Writes the last fragment, syncs and closes the file; the hash covers the whole file. */
  async finalize(): Promise<{ bytes: number; sha256: string }> {
    await this.output.finalize();
    return { bytes: this.sink.bytes, sha256: this.sink.digest() };
  }

  /** Stops writing and closes the file, leaving what was written (a valid prefix) in place. */
  async cancel(): Promise<void> {
    await this.output.cancel();
  }
}

/** What `sparseTextTrack` reaches inside mediabunny 1.61's MP4 muxer (not its public API). */
interface IsobmffMuxerInternals {
  getSubtitleTrackData(
    track: OutputSubtitleTrack,
    meta: { config: { description: string } },
  ): { closed: boolean };
}

/**
 * mediabunny's fragmented MP4 muxer treats a subtitle track like audio and video: it writes no
 * fragment until every track has a sample queued, and it declares a WebVTT track (writes the moov)
 * only once its first cue came. Messages are rare and come at any time, so with a text track
 * nothing would reach the file until the next message or the end (measured: 28 bytes written
 * after 12 s of video, 39 kB the moment a cue came): the video would pile up in memory and a
 * crash would leave an empty file. So the track is declared up front with the WebVTT header as
 * its configuration, and marked as one the muxer need not wait for, the state mediabunny gives a
 * closed track. Its cues can still be added (the source itself stays open); their samples go into
 * the next fragment written, at their own times. Two internal members are used; they are checked
 * here, and src/media/mp4-writer.spec.ts proves the behaviour, so an upgrade of mediabunny that
 * changes them fails loudly instead of holding recordings in memory.
 */
function sparseTextTrack(output: Output, track: OutputSubtitleTrack): void {
  const muxer = (output as unknown as { _muxer?: Partial<IsobmffMuxerInternals> })._muxer;
  if (typeof muxer?.getSubtitleTrackData !== 'function') {
    throw new Error('this mediabunny version has no getSubtitleTrackData: see sparseTextTrack');
  }
  // Called right after start, before any packet: nothing else holds the muxer's lock.
  const trackData = muxer.getSubtitleTrackData(track, { config: { description: 'WEBVTT' } });
  if (typeof trackData?.closed !== 'boolean') {
    throw new Error("this mediabunny version's track data has no `closed`: see sparseTextTrack");
  }
  trackData.closed = true;
}

function audioDecoderConfig(audio: NonNullable<LiveMp4Options['audio']>) {
  if (audio.opus) {
    // Opus always decodes at 48 kHz (RFC 7845 §4); the OpusHead, when the client sent one, gives
    // the muxer its pre-skip, else it writes the default of 80 ms.
    return {
      codec: 'opus',
      sampleRate: 48_000,
      numberOfChannels: audio.channels,
      ...(audio.opus.description ? { description: audio.opus.description } : {}),
    };
  }
  const rateIndex = AAC_SAMPLE_RATES.indexOf(audio.sampleRate as (typeof AAC_SAMPLE_RATES)[number]);
  if (rateIndex < 0) {
    throw new Error(`AAC has no sampling frequency index for ${audio.sampleRate} Hz`);
  }
  return {
    codec: 'mp4a.40.2',
    sampleRate: audio.sampleRate,
    numberOfChannels: audio.channels,
    description: audioSpecificConfig(AAC_LC, rateIndex, audio.channels),
  };
}
