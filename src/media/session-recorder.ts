import type { Logger } from '@nestjs/common';
import { setTimeout as delay } from 'node:timers/promises';
import type { AppConfig } from '../config/config';
import {
  MEDIA_HEADER_BYTES,
  type MediaHeader,
  readStoredHeader,
  type StoredHeader,
  Track,
} from '../protocol/media-header';
import type { AudioSettings } from '../sessions/session.types';
import { SPOOL_HEADER_BYTES, SPOOL_RECORD_PREFIX_BYTES, SpoolFollower } from '../spool/spool';
import type { CpuClass } from './cpu-class';
import type { FinishLanes } from './finish-lanes';
import { BadImageError, FramePipeline } from './frame-pipeline';
import { isKeyframe } from './h264-stream';
import type { ImageDecoder } from './image-decoder';
import type { ImageWork, SessionImageWork } from './image-work';
import type { PassthroughVideo } from './mp4-writer';
import type { AudioEncoder, Mp4Sink, RecorderMedia } from './recorder-media';
import { VideoLanes } from './video-lanes';
import type { TextCue } from './webvtt';

/** Times an encoder may die on a bad frame in one session before the recording fails. */
const MAX_ENCODER_RESTARTS = 20;
/** Audio may trail video by this much before silence is inserted. */
const AUDIO_LAG_S = 1;
/** A jump in audio pts beyond this is a gap to fill, not jitter. */
const AUDIO_GAP_S = 0.05;

/**
 * What one frame of compressed video recorded as sent (parsed, spooled, muxed: no decode, no x264)
 * costs in reference frames, for admission and the capacity estimate. bench:codecs measures the
 * pass-through path's CPU per frame against x264's (docs/performance.md, "Compressed video": 0.078
 * at 640×480 on 2 cores, 2026-12-03); this rounds it up, so admission stays on the safe side.
 */
export const PASSTHROUGH_FRAME_WEIGHT = 0.08;

/**
 * 20 ms of silence in Opus (RFC 6716: TOC config 31, CELT fullband 20 ms, one frame, and a
 * two-byte frame that decodes to silence), mono and stereo: fills a declared Opus track that
 * trails the video, as PCM silence does for AAC.
 */
const OPUS_SILENCE = [Buffer.from([0xf8, 0xff, 0xfe]), Buffer.from([0xfc, 0xff, 0xfe])] as const;
const OPUS_SILENCE_S = 0.02;

/**
 * A following recorder told to finish at a seq its spool does not show yet reads again this many
 * times, this far apart: the gateway made the records durable before it said so, but a shared
 * volume over the network (NFS attribute caching) may show them to this node a little later.
 */
const FOLLOW_FINISH_RETRIES = 50;
const FOLLOW_RETRY_MS = 20;

/** Frames held in memory for the encoder; past this the recorder reads them from the spool. */
const MAX_QUEUED_FRAMES = 64;
/**
 * ...or this many bytes of them: 64 frames of MAX_FRAME_BYTES (2 MiB) would hold 128 MB for one
 * session. 4 MiB is over 64 frames of a 640×480 JPEG (25–50 KB), so ordinary sessions meet the
 * frame bound first.
 */
const MAX_QUEUED_BYTES = 4 * 1024 * 1024;
/**
 * An encoder that keeps up runs in the live CPU class (nice 15, `cpu-class.ts`): real-time
 * recording is what a node is sized for, and the encoders still get every cycle the event loop
 * and Postgres leave, while acks no longer wait behind them (bench:capacity). A live recorder
 * whose client sends faster than real time (the newest frame offered is more than BEHIND_MS of
 * capture time ahead of the one being encoded, or BEHIND_QUEUED_FRAMES wait for it) encodes what
 * the spool already holds safely: its encoder goes to the background CPU class, yielding to
 * storing and acknowledging frames, and comes back when the recorder has caught up. When the
 * session finishes behind, `close` waits for its encoder, which must then progress however busy
 * the cores are (beside two busy loops a SCHED_IDLE encoder got nothing and its `close` never
 * came), without all of them returning to the service's priority at once (100 sessions closing
 * at once, each finishing its encoder at normal priority, starved Postgres into 5 s pool timeouts
 * in bench:ingest): one per core takes a finish lane at the service's priority (`FinishLanes`),
 * the others wait at nice 19 with normal scheduling, the smallest share that is never starved.
 * Recorders that start from the spool with an encoder slot (after a restart, or after waiting for
 * one) are not pushed back; one started without a slot because its session is finishing is.
 */
const BEHIND_MS = 2_000;
/** ...or this many frames are queued for it (a quarter of the queue; a real-time one holds ~0). */
const BEHIND_QUEUED_FRAMES = 16;

export interface RecorderSession {
  id: string;
  /** Capture frame rate: the nominal interval of the last frame. */
  fps: number;
  audio: AudioSettings | null;
  width: number;
  height: number;
  /** The video size the session declared: its images' size limit follows it. */
  declared: { width: number; height: number };
  /**
   * Compressed video, recorded as sent: no frame pipeline, no encoder; `width`/`height` are the
   * declared coded size. Null for JPEG sessions.
   */
  passthrough: PassthroughVideo | null;
}

/** Frames stored but not yet encoded, and whether they come from the spool. */
export interface RecorderBacklog {
  /** Every frame stored and not yet out of the encoder. */
  frames: number;
  /**
   * Of those, the frames inside the encoder: ffmpeg holds each JPEG until the next one begins, so
   * a recorder that keeps up shows about one here.
   */
  encoding: number;
  fromSpool: boolean;
  /** Its recorder runs (an encoder takes its frames); false while it waits for a slot. */
  started: boolean;
}

export interface RecorderEvents {
  /** A video frame was refused by the frame pipeline; it is not in the recording. */
  onBadImage(seq: number, reason: string): void;
  /**
   * A refused chunk's tombstone was read (its `bad_frame` went to the client when it arrived): it
   * counts as a rejected frame, like a bad image, once durable.
   */
  onRefused(seq: number): void;
  /** The encoder fell behind (frames come from the spool now) or caught up again. */
  onBacklog(behind: boolean): void;
  /**
   * The session sends more image work than its image budget pays for: the frame rate the budget
   * pays for, to ask of the client (`flow` with reason `image_budget`); again when it changes
   * with the cost of its images.
   */
  onImageCost?(maxFps: number): void;
}

export interface RecordingResult {
  path: string;
  bytes: number;
  sha256: string;
  frameCount: number;
  durationMs: number;
  width: number;
  height: number;
  videoCodec: 'h264' | 'vp8' | 'vp9';
  audioCodec: 'aac' | 'opus' | null;
}

export interface RecorderDeps {
  config: AppConfig;
  logger: Logger;
  ffmpegPath: string;
  spoolPath: string;
  outputPath: string;
  events: RecorderEvents;
  /** ffmpeg and the MP4 file (a fault-injecting double in tests). */
  media: RecorderMedia;
  /** The node's lanes for behind encoders that a `close` waits for. */
  finishLanes: FinishLanes;
  /**
   * Encoders a recorder that is behind splits its tail across (`VideoLanes`): the node's cores,
   * since the extra ones run only on CPU nothing else wants.
   */
  tailEncoders: number;
  /** The node's image queue and budgets, and its decoder processes. */
  imageWork: ImageWork;
  decoder: ImageDecoder;
  /**
   * The recorder failed while running (an MP4 write, the encoder, the spool read): called once,
   * at the failure, not when `finish` asks. Not called after `abort()`.
   */
  onFailed(err: Error): void;
  /**
   * A video frame went into the MP4 (out of the encoder, or as sent): the node's measure of
   * recording capacity.
   */
  onEncoded(): void;
}

/** A session that stored no video has nothing to record: an expected outcome, not a fault. */
export class NoVideoFramesError extends Error {
  constructor() {
    super('no video frames to record');
    this.name = 'NoVideoFramesError';
  }
}

/**
 * Encodes one session while it streams: video frames through the frame pipeline into an H.264
 * encoder (one ffmpeg per session), audio into AAC, muxed in-process into fragmented MP4 with each
 * frame at its capture pts (variable frame rate). Compressed video (and Opus) is muxed as sent,
 * with no ffmpeg in the path (pass-through): its chunks were checked before they were stored, and
 * refused ones are tombstones in the spool, skipped here. Frames normally come from memory as they are
 * stored; when the encoder falls behind, or for a session recorded after the fact, they are read
 * from the spool, which is the source of truth. Records are processed strictly in seq order.
 */
export class SessionRecorder {
  private readonly pipeline: FramePipeline | null;
  /** This recorder's slot in the node's image queue; closed when the recorder stops. */
  private readonly images: SessionImageWork | null;
  /** Reads the spool when the recorder is behind (or records after the fact). */
  private readonly spool: SpoolFollower;
  private readonly queue: Array<{
    message: Buffer;
    header: MediaHeader | StoredHeader;
    offset: number;
  }> = [];
  private queuedBytes = 0;
  /** Spool offset of the next record offered (the spool's end as far as we know). */
  private appendOffset: number;
  /** Spool offset and seq of the next record to process. */
  private nextOffset = SPOOL_HEADER_BYTES;
  private nextSeq = 1;
  /** Highest seq offered (stored by the session). */
  private latestSeq = 0;
  private catchingUp: boolean;
  /** Reads the spool as another node writes it (NODE_ROLE=worker): never switches to `offer`. */
  private readonly following: boolean;
  private lateReads = 0;
  /** Behind its client: the encoder runs in the background CPU class. */
  private yielding = false;
  /** Finishing behind: holds one of the node's finish lanes (encodes at the service's priority). */
  private inLane = false;
  /** Gives the finish lane back (or leaves its queue); a no-op until `complete` entered one. */
  private leaveLane: () => void = () => undefined;
  /** Capture pts (ms) of the last record handed to `process`. */
  private processedPts: number | null = null;
  private finishing = false;
  private wake: (() => void) | null = null;
  private loop: Promise<void> | null = null;
  /** The first failure; everything after it is a consequence. */
  private failure: Error | null = null;
  /** The MP4 given up after a failure or abort: settles once its file is released. */
  private released: Promise<void> = Promise.resolve();

  /** The H.264 encoders (JPEG sessions); created with the MP4. */
  private video: VideoLanes | null = null;
  private audio: AudioEncoder | null = null;
  private writer: Mp4Sink | null = null;
  /**
   * MP4 writes in order. Each link handles its own failure (`enqueueWrite`): a rejected write is
   * the recorder's failure at once, never a rejection waiting for someone to await the chain.
   */
  private writes: Promise<void> = Promise.resolve();
  private outputOpen = false;
  /** Set by abort(): a frame still being processed must not start an encoder or open the MP4. */
  private aborted = false;
  private pendingVideo: { au: Buffer; key: boolean; ts: number } | null = null;
  private lastVideoTs = -1;
  private videoFrames = 0;
  private videoEndS = 0;
  private firstAudioS: number | null = null;
  private audioPrimed = false;
  private audioSamplesIn = 0;
  private audioSamplesOut = 0;
  private pendingAudio: { frame: Uint8Array; ts: number; samples: number } | null = null;
  private audioEndS = 0;
  /** Opus packets are muxed as sent (no audio encoder). */
  private readonly opus: boolean;
  /** End of the last Opus packet (or silence) queued for the MP4; null before the first. */
  private opusEndS: number | null = null;

  constructor(
    private readonly deps: RecorderDeps,
    private readonly session: RecorderSession,
    /**
     * `live`: fed from memory from the first frame; `spool`: start by reading the spool; `follow`:
     * read the spool as it grows, woken by `durable()` (a worker recording a gateway's session).
     */
    mode: 'live' | 'spool' | 'follow',
    spoolBytes: number,
    /** Start in the background CPU class: encoding beyond the node's encoder slots. */
    background = false,
  ) {
    this.yielding = background;
    this.catchingUp = mode !== 'live';
    this.following = mode === 'follow';
    this.appendOffset = Math.max(spoolBytes, SPOOL_HEADER_BYTES);
    this.spool = new SpoolFollower(deps.spoolPath);
    this.opus = session.audio?.codec === 'opus';
    if (session.passthrough) {
      this.images = null;
      this.pipeline = null;
      return;
    }
    this.images = deps.imageWork.session((maxFps) => deps.events.onImageCost?.(maxFps));
    this.pipeline = new FramePipeline({
      width: session.width,
      height: session.height,
      declaredWidth: session.declared.width,
      declaredHeight: session.declared.height,
      maxScale: deps.config.IMAGE_MAX_SCALE,
      maxInputPixels: deps.config.RECORDING_MAX_INPUT_PIXELS,
      watermark: deps.config.RECORDING_WATERMARK,
      sessionId: session.id,
      decoder: deps.decoder,
      work: this.images,
    });
  }

  get backlog(): RecorderBacklog {
    // Frames inside the encoder count too: under overload they are where the backlog starts.
    return {
      frames: Math.max(0, this.latestSeq - this.nextSeq + 1) + this.encoding,
      encoding: this.encoding,
      fromSpool: this.catchingUp,
      started: true,
    };
  }

  private get encoding(): number {
    return this.video?.encoding ?? 0;
  }

  private startVideo(): void {
    const { config } = this.deps;
    const pipeline = this.pipeline!;
    this.video = new VideoLanes({
      create: (onAccessUnit, keyframeEvery) => {
        const encoder = this.deps.media.createVideoEncoder(
          this.deps.ffmpegPath,
          this.deps.outputPath,
        );
        encoder.start({
          width: this.session.width,
          height: this.session.height,
          fps: Math.max(1, Math.round(this.session.fps)),
          preset: config.RECORDING_PRESET,
          crf: config.RECORDING_CRF,
          ...(keyframeEvery === null ? {} : { keyframeEvery }),
          onAccessUnit,
        });
        return encoder;
      },
      maxTails: this.deps.tailEncoders,
      chunk: Math.max(2, Math.round(this.session.fps)),
      maxRestarts: MAX_ENCODER_RESTARTS,
      onFrame: (au, ts) => this.onAccessUnit(au, ts),
      decodes: (jpeg) => pipeline.decodes(jpeg),
      onBadFrame: (seq) => this.deps.events.onBadImage(seq, 'image cannot be decoded'),
      onDied: () => this.kick(),
      onFailed: (err) => this.fail(err),
    });
    this.applyCpuClasses();
  }

  /**
   * Starts following the session. The MP4 and the encoders are created with the first frame, so
   * a session that is open but idle costs no ffmpeg process and no open file.
   */
  start(): Promise<void> {
    this.loop = this.run().catch((err: unknown) => this.fail(err));
    return Promise.resolve();
  }

  private async openOutput(): Promise<void> {
    this.outputOpen = true;
    const { audio, passthrough } = this.session;
    const writer = await this.deps.media.createWriter(this.deps.outputPath, {
      video: {
        width: this.session.width,
        height: this.session.height,
        ...(passthrough ? { passthrough } : {}),
      },
      audio: audio
        ? {
            sampleRate: audio.sampleRate,
            channels: audio.channels,
            ...(this.opus ? { opus: { description: base64Bytes(audio.description) } } : {}),
          }
        : undefined,
    });
    if (this.aborted) {
      // Given up while the file was being created: release it now.
      this.released = writer.cancel().catch(() => undefined);
      throw new Error('recording aborted');
    }
    this.writer = writer;
    if (!passthrough) {
      this.startVideo();
    }
    if (this.session.audio && !this.opus) {
      this.audio = this.deps.media.createAudioEncoder(this.deps.ffmpegPath, this.deps.outputPath);
      this.audio.start({
        sampleRate: this.session.audio.sampleRate,
        channels: this.session.audio.channels,
        onFrame: (frame, info) => this.onAudioFrame(frame, info.samples),
      });
    }
  }

  /**
   * A record the session just stored, in seq order (a refused chunk's tombstone too). Hot path:
   * O(1), no await.
   */
  offer(message: Buffer, header: MediaHeader | StoredHeader): void {
    const offset = this.appendOffset;
    this.appendOffset += SPOOL_RECORD_PREFIX_BYTES + message.length;
    this.latestSeq = header.seq;
    if (header.track === Track.Video) {
      // The client's image rate, counted as it sends, however far behind the decoding is.
      this.images?.arrived();
    }
    if (
      !this.yielding &&
      ((this.processedPts !== null && header.pts - this.processedPts > BEHIND_MS) ||
        this.queue.length >= BEHIND_QUEUED_FRAMES)
    ) {
      this.setYielding(true);
    }
    if (this.catchingUp) {
      return;
    }
    if (
      this.queue.length >= MAX_QUEUED_FRAMES ||
      this.queuedBytes + message.length > MAX_QUEUED_BYTES
    ) {
      // Behind: drop the in-memory copies; the spool has them all.
      this.queue.length = 0;
      this.queuedBytes = 0;
      this.catchingUp = true;
      this.setYielding(true);
      this.deps.events.onBacklog(true);
    } else {
      this.queue.push({ message, header, offset });
      this.queuedBytes += message.length;
    }
    this.kick();
  }

  /** Records up to `seq` are on disk: a recorder catching up may read them. */
  durable(): void {
    this.kick();
  }

  /**
   * Encodes everything up to `lastSeq` (everything stored), closes the encoders, writes the text
   * track's `cues` (the session's messages) and finalizes the MP4. What is left to encode at this
   * point is at most the frames in flight, so this takes milliseconds for a live recorder. The
   * cues are awaited only once the encoders are done: they can be read meanwhile.
   */
  async finish(lastSeq: number, cues: PromiseLike<readonly TextCue[]>): Promise<RecordingResult> {
    try {
      return await this.settle(lastSeq, cues);
    } finally {
      this.leaveLane();
      this.images?.close();
    }
  }

  private async settle(
    lastSeq: number,
    cues: PromiseLike<readonly TextCue[]>,
  ): Promise<RecordingResult> {
    try {
      return await this.complete(lastSeq, cues);
    } catch (err) {
      // Whatever failed, the encoders stop and the file is released before this rejects.
      this.stop();
      await this.released;
      throw this.failure ?? err;
    }
  }

  private async complete(
    lastSeq: number,
    cues: PromiseLike<readonly TextCue[]>,
  ): Promise<RecordingResult> {
    this.latestSeq = Math.max(this.latestSeq, lastSeq);
    this.finishing = true;
    if (this.yielding && !this.session.passthrough) {
      // From here `close` waits for this encoder: it must make progress however busy the cores are.
      this.leaveLane = this.deps.finishLanes.enter(() => {
        this.inLane = true;
        this.applyCpuClasses();
      });
    }
    this.applyCpuClasses();
    this.kick();
    await this.loop;
    await this.throwIfFailed();
    const writer = this.writer;
    if (!writer || (this.videoFrames === 0 && this.encoding === 0 && this.pendingVideo === null)) {
      throw new NoVideoFramesError();
    }
    await this.video?.end();
    await this.audio?.end();
    await this.writes;
    await this.throwIfFailed();
    if (this.pendingAudio) {
      const last = this.pendingAudio;
      this.pendingAudio = null;
      const left = this.audioSamplesIn - (this.audioSamplesOut - last.samples);
      await this.writeAudio(writer, last, Math.max(1, Math.min(last.samples, Math.round(left))));
    }
    if (this.pendingVideo) {
      const last = this.pendingVideo;
      this.pendingVideo = null;
      await this.writeVideo(writer, last, 1 / this.session.fps);
    }
    // The duration stays the media's: ffmpeg reads the text track as data, whose end it leaves out
    // of the file's duration, and so do players that stop with the video.
    await writer.addCues(await cues);
    const { bytes, sha256 } = await writer.finalize();
    return {
      path: this.deps.outputPath,
      bytes,
      sha256,
      frameCount: this.videoFrames,
      durationMs: Math.round(Math.max(this.videoEndS, this.audioEndS) * 1000),
      width: this.session.width,
      height: this.session.height,
      videoCodec: recordedCodec(this.session.passthrough),
      audioCodec: this.opus ? 'opus' : this.audio ? 'aac' : null,
    };
  }

  /**
   * Stops at once (the session went away or the process stops): encoders killed, the MP4 left
   * with its complete fragments. Not a failure: the spool still holds everything, and whoever
   * records this session next rebuilds it from there.
   */
  abort(): void {
    if (this.aborted) {
      return;
    }
    this.aborted = true;
    this.stop();
  }

  /** Rejects with the failure, once the failed MP4's file is released. */
  private async throwIfFailed(): Promise<void> {
    if (this.failure || this.aborted) {
      this.stop();
      await this.released;
      throw this.failure ?? new Error('recording aborted');
    }
  }

  /**
   * A failure, handled where it happens: recorded (the first one wins), the encoders stopped, the
   * MP4 released, and the owner told. The spool is untouched, so the recording can be rebuilt.
   */
  private fail(err: unknown): void {
    if (this.failure) {
      return;
    }
    this.failure = err instanceof Error ? err : new Error(String(err));
    this.stop();
    if (!this.aborted) {
      this.deps.onFailed(this.failure);
    }
  }

  private stop(): void {
    this.finishing = true;
    this.queue.length = 0;
    this.queuedBytes = 0;
    this.images?.close();
    this.kick();
    this.video?.kill();
    this.audio?.kill();
    const writer = this.writer;
    if (writer) {
      this.writer = null;
      // Keeps the complete fragments written so far and releases the file.
      this.released = writer.cancel().catch(() => undefined);
    }
  }

  /** Appends one MP4 write to the chain; its failure is handled here, not by a later await. */
  private enqueueWrite(write: (writer: Mp4Sink) => Promise<void>): void {
    this.writes = this.writes
      .then(() => (this.failure || !this.writer ? undefined : write(this.writer)))
      .catch((err: unknown) => this.fail(err));
  }

  /** Moves the encoder to the background CPU class while behind its client, and back. */
  private setYielding(behind: boolean): void {
    if (behind !== this.yielding) {
      this.yielding = behind;
      this.applyCpuClasses();
    }
  }

  /**
   * The encoders whose frames come first take the recorder's class: `live` while its session
   * streams and it keeps up, `normal` once `close` waits for it, the classes of `yieldingClass`
   * while it is behind its client. The other tail encoders only
   * add speed: they use no CPU anything else wants (`background`), except once `close` waits for
   * them and the recorder holds a finish lane (or was never behind its client): then the smallest
   * share that is never starved (`low`), so they progress on a busy machine too. A finishing
   * recorder still waiting for a lane keeps them in the background, so that 100 sessions closing
   * behind at once add no more weight against the service than they did with one encoder each.
   */
  private applyCpuClasses(): void {
    this.video?.setClasses(
      this.yielding ? this.yieldingClass() : this.finishing ? 'normal' : 'live',
      this.finishing && (this.inLane || !this.yielding) ? 'low' : 'background',
    );
  }
  /**
   * Behind while streaming: the background class (SCHED_IDLE). Behind while finishing: `close`
   * waits for this encoder, so the service's priority in a finish lane, else `low`, the smallest
   * share that is never starved, until a lane frees.
   */
  private yieldingClass(): CpuClass {
    if (!this.finishing) {
      return 'background';
    }
    return this.inLane ? 'normal' : 'low';
  }

  private kick(): void {
    const wake = this.wake;
    if (wake) {
      this.wake = null;
      wake();
    }
  }

  private sleep(): Promise<void> {
    return new Promise((resolve) => {
      this.wake = resolve;
    });
  }

  private async run(): Promise<void> {
    try {
      await this.follow();
    } finally {
      await this.spool.close().catch(() => undefined);
    }
  }

  private async follow(): Promise<void> {
    for (;;) {
      if (this.failure || this.aborted) {
        return;
      }
      if (this.catchingUp) {
        const progressed = await this.readSpool();
        if (!this.following && this.nextSeq > this.latestSeq && !this.finishing) {
          this.catchingUp = false;
          this.setYielding(false);
          this.deps.events.onBacklog(false);
          continue;
        }
        if (this.finishing && (this.nextSeq > this.latestSeq || !progressed)) {
          if (this.nextSeq <= this.latestSeq) {
            if (this.following && this.lateReads++ < FOLLOW_FINISH_RETRIES) {
              await delay(FOLLOW_RETRY_MS);
              continue;
            }
            throw new Error(`spool ends at seq ${this.nextSeq - 1}, expected ${this.latestSeq}`);
          }
          return;
        }
        if (!progressed) {
          await this.sleep();
        }
      } else {
        const item = this.queue.shift();
        if (item) {
          this.queuedBytes -= item.message.length;
          await this.process(item.message, item.header, item.offset);
        } else if (this.finishing) {
          return;
        } else {
          // Everything offered is encoded: caught up with the client.
          this.setYielding(false);
          await this.sleep();
        }
      }
    }
  }

  /** Processes every intact spool record from nextOffset to the end; false when there was none. */
  private async readSpool(): Promise<boolean> {
    let progressed = false;
    for (;;) {
      let message: Buffer | null;
      try {
        message = await this.spool.recordAt(this.nextOffset);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
          return progressed;
        }
        throw err;
      }
      if (!message) {
        // Not fully written yet (or torn by a crash): wait for more, never record it.
        return progressed;
      }
      const header = readStoredHeader(message);
      if (typeof header === 'string' || header.seq !== this.nextSeq) {
        throw new Error(`spool record at ${this.nextOffset} is not seq ${this.nextSeq}`);
      }
      await this.process(message, header, this.nextOffset);
      progressed = true;
    }
  }

  private async process(
    message: Buffer,
    header: MediaHeader | StoredHeader,
    offset: number,
  ): Promise<void> {
    if ('refused' in header && header.refused) {
      // Its `bad_frame` went to the client when it arrived; once durable it counts as rejected.
      this.nextOffset = offset + SPOOL_RECORD_PREFIX_BYTES + message.length;
      this.nextSeq = header.seq + 1;
      this.deps.events.onRefused(header.seq);
      return;
    }
    if (!this.outputOpen) {
      await this.openOutput();
    }
    this.nextOffset = offset + SPOOL_RECORD_PREFIX_BYTES + message.length;
    this.nextSeq = header.seq + 1;
    this.processedPts = header.pts;
    const payload = message.subarray(MEDIA_HEADER_BYTES);
    const ts = header.pts / 1000;
    if (this.opus && header.track === Track.Audio) {
      await this.passAudio(payload, ts);
      return;
    }
    if (this.session.passthrough && header.track === Track.Video) {
      await this.passVideo(payload, header.key, ts);
      return;
    }
    if (header.track === Track.Audio) {
      if (this.audio && this.session.audio) {
        this.firstAudioS ??= ts;
        // A gap in the client's audio (its pts is ahead of what was sent) is filled with silence,
        // so later audio stays at its capture time; overlaps are appended as they come.
        const gap = ts - (this.firstAudioS + this.audioSamplesIn / this.session.audio.sampleRate);
        if (gap > AUDIO_GAP_S) {
          await this.writeSilence(gap);
        }
        this.audioSamplesIn += payload.length / (2 * this.session.audio.channels);
        if (!this.audio.write(payload)) {
          await this.audio.drained();
        }
      }
      return;
    }
    let jpeg: Buffer;
    try {
      // Only a pass-through session has no pipeline, and its video went to passVideo.
      jpeg = await this.pipeline!.prepare(payload, header.pts);
    } catch (err) {
      if (err instanceof BadImageError) {
        this.deps.events.onBadImage(header.seq, err.message);
        return;
      }
      throw err;
    }
    // Capture times must rise for a decoder; a client clock step back is nudged forward 1 ms.
    const at = ts > this.lastVideoTs ? ts : this.lastVideoTs + 0.001;
    this.lastVideoTs = at;
    await this.fillSilence(at);
    // Only a pass-through session has no encoders, and its video went to passVideo.
    await this.video!.write(
      jpeg,
      at,
      header.seq,
      this.latestSeq - header.seq,
      this.finishing,
      // Tails only for a `close` waiting in a finish lane: at most one recorder per core splits,
      // and never one behind while streaming, whose extra processes (a fork each) and key frames
      // made an overloaded node fall further behind (docs/recording.md).
      this.finishing && this.inLane,
    );
  }

  /**
   * A session that declared audio but sends none (or stops) gets silence up to the video's time:
   * the MP4 interleaves tracks by time, so a silent-but-declared track would otherwise hold every
   * video fragment in memory until the end.
   */
  private async fillSilence(videoTs: number): Promise<void> {
    const audio = this.session.audio;
    if (audio && this.opus) {
      await this.fillOpusSilence(videoTs - AUDIO_LAG_S, audio.channels);
      return;
    }
    if (!audio || !this.audio) {
      return;
    }
    this.firstAudioS ??= videoTs;
    await this.writeSilence(
      videoTs - AUDIO_LAG_S - (this.firstAudioS + this.audioSamplesIn / audio.sampleRate),
    );
  }

  private async writeSilence(seconds: number): Promise<void> {
    const audio = this.session.audio;
    if (!audio || !this.audio || seconds <= 0) {
      return;
    }
    const samples = Math.round(seconds * audio.sampleRate);
    this.audioSamplesIn += samples;
    if (!this.audio.write(Buffer.alloc(samples * 2 * audio.channels))) {
      await this.audio.drained();
    }
  }

  /**
   * A compressed chunk as sent: muxed at its capture time, lasting until the next one's. Goes
   * through the write chain (with the AAC frames of a PCM track) and waits for it: the muxer's
   * backpressure.
   */
  private async passVideo(chunk: Buffer, key: boolean, ts: number): Promise<void> {
    const at = ts > this.lastVideoTs ? ts : this.lastVideoTs + 0.001;
    this.lastVideoTs = at;
    await this.fillSilence(at);
    const previous = this.pendingVideo;
    this.pendingVideo = { au: chunk, key, ts: at };
    if (previous) {
      this.enqueueWrite((writer) => this.writeVideo(writer, previous, at - previous.ts));
      await this.writes;
    }
  }

  /** An Opus packet as sent, at its capture time (never before the previous one's end). */
  private async passAudio(packet: Buffer, ts: number): Promise<void> {
    const at = this.opusEndS === null ? ts : Math.max(ts, this.opusEndS);
    this.opusEndS = at + opusPacketSeconds(packet);
    this.enqueueWrite((writer) => this.writeOpus(writer, packet, at, opusPacketSeconds(packet)));
    await this.writes;
  }

  /** Silence up to `untilS` on an Opus track that trails (or has not started), from the video's start. */
  private async fillOpusSilence(untilS: number, channels: 1 | 2): Promise<void> {
    let end = this.opusEndS ?? this.lastVideoTs;
    this.opusEndS = end;
    if (end + OPUS_SILENCE_S > untilS) {
      return;
    }
    const silence = OPUS_SILENCE[channels - 1];
    for (; end + OPUS_SILENCE_S <= untilS; end += OPUS_SILENCE_S) {
      const at = end;
      this.enqueueWrite((writer) => this.writeOpus(writer, silence, at, OPUS_SILENCE_S));
    }
    this.opusEndS = end;
    await this.writes;
  }

  private async writeOpus(
    writer: Mp4Sink,
    packet: Buffer,
    at: number,
    durationS: number,
  ): Promise<void> {
    await writer.addAudio(packet, at, durationS);
    this.audioEndS = at + durationS;
  }

  private onAccessUnit(au: Buffer, ts: number): void {
    const previous = this.pendingVideo;
    this.pendingVideo = { au, key: isKeyframe(au), ts };
    if (previous) {
      this.enqueueWrite((writer) => this.writeVideo(writer, previous, ts - previous.ts));
    }
  }

  private async writeVideo(
    writer: Mp4Sink,
    frame: { au: Buffer; key: boolean; ts: number },
    durationS: number,
  ): Promise<void> {
    await writer.addVideo(frame.au, frame.key, frame.ts, durationS);
    this.videoFrames++;
    this.deps.onEncoded();
    this.videoEndS = frame.ts + durationS;
  }

  /**
   * AAC frames in order. The encoder's first frame is its priming (1024 samples of delay, in both
   * ffmpeg versions we support) and is dropped, so audio starts at the first message's pts; the
   * last frame is cut to the samples actually sent, so the track lasts exactly as long as the PCM.
   */
  private onAudioFrame(frame: Uint8Array, samples: number): void {
    if (!this.audioPrimed) {
      this.audioPrimed = true;
      return;
    }
    const rate = this.session.audio?.sampleRate ?? 48_000;
    const ts = (this.firstAudioS ?? 0) + this.audioSamplesOut / rate;
    this.audioSamplesOut += samples;
    const previous = this.pendingAudio;
    this.pendingAudio = { frame, ts, samples };
    if (previous) {
      this.enqueueWrite((writer) => this.writeAudio(writer, previous, previous.samples));
    }
  }

  private async writeAudio(
    writer: Mp4Sink,
    a: { frame: Uint8Array; ts: number },
    samples: number,
  ): Promise<void> {
    const rate = this.session.audio?.sampleRate ?? 48_000;
    await writer.addAudio(a.frame, a.ts, samples / rate);
    this.audioEndS = a.ts + samples / rate;
  }
}

function recordedCodec(passthrough: PassthroughVideo | null): RecordingResult['videoCodec'] {
  switch (passthrough?.family) {
    case undefined:
    case 'avc':
      return 'h264';
    case 'vp8':
      return 'vp8';
    case 'vp9':
      return 'vp9';
  }
}

function base64Bytes(value: string | undefined): Uint8Array | null {
  return value ? Buffer.from(value, 'base64') : null;
}

/** Frame durations of the 32 TOC configurations (RFC 6716 §3.1), in 2.5 ms units. */
const OPUS_FRAME_UNITS = [
  4, 8, 16, 24, 4, 8, 16, 24, 4, 8, 16, 24, 4, 8, 4, 8, 1, 2, 4, 8, 1, 2, 4, 8, 1, 2, 4, 8, 1, 2, 4,
  8,
];

/**
 * An Opus packet's duration from its TOC byte and frame count (RFC 6716 §3.1–3.2). The packet
 * passed the session's Opus check before it was stored, so the count byte of code 3 is there.
 */
function opusPacketSeconds(packet: Buffer): number {
  const toc = packet[0];
  const code = toc & 0x03;
  const frames = code === 0 ? 1 : code === 3 ? packet[1] & 0x3f : 2;
  return (OPUS_FRAME_UNITS[toc >> 3] * frames * 2.5) / 1000;
}
