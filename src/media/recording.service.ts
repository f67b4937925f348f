import { Inject, Injectable, Logger, type OnModuleDestroy } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { randomUUID } from 'node:crypto';
import { mkdirSync, statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { IsNull, Not, type Repository } from 'typeorm';
import { z } from 'zod';
import { APP_CONFIG, type AppConfig, recordingsDirOf } from '../config/config';
import { SessionMessageEntity } from '../sessions/session-message.entity';
import type { SessionEntity } from '../sessions/session.entity';
import type { VideoSettings } from '../sessions/session.types';
import { videoCodecFamily } from '../protocol/codecs';
import { EncoderSlots } from './encoder-slots';
import { locateTool } from './ffmpeg-locator';
import { PROCESS_STARTER } from './process-launcher';
import { FinishLanes } from './finish-lanes';
import { ImageDecoderPool } from './image-decoder';
import { ImageWork, imageWorkStatsSchema } from './image-work';
import { FFMPEG_RECORDER_MEDIA, type RecorderMedia } from './recorder-media';
import { RecordingEntity } from './recording.entity';
import { RemoteRecordings } from './remote-recordings.service';
import { RecordingWorkStore } from './recording-work.store';
import {
  type RecorderBacklog,
  type RecorderEvents,
  type RecorderSession,
  PASSTHROUGH_FRAME_WEIGHT,
  SessionRecorder,
} from './session-recorder';
import { type RecordingHandle, SessionRecording } from './session-recording';
import { messageCues, type TextCue } from './webvtt';
import type { PassthroughVideo } from './mp4-writer';

/**
 * Live encoders per core when RECORDING_MAX_ENCODERS is unset: bench:recording kept 38 sessions of
 * 10 fps 640×480 in real time on 2 cores (about 1/20 of a core each with the service's overhead);
 * 18 per core leaves headroom for sharp, Postgres and the event loop.
 */
const ENCODERS_PER_CORE = 18;

/** `GET /v1/admin/recording`: encoder slots, image work and each recorder's backlog. */
export const recordingStatusSchema = z.strictObject({
  encoders: z.strictObject({
    active: z.number().int(),
    waiting: z.number().int(),
    max: z.number().int(),
  }),
  /** The node's image queue, and its decoder processes running now. */
  images: imageWorkStatsSchema.extend({ decoderProcesses: z.number().int() }),
  recorders: z.array(
    z.strictObject({
      sessionId: z.string().uuid(),
      /** Frames stored and not yet out of the encoder. */
      backlogFrames: z.number().int(),
      /** Of those, the frames inside ffmpeg. */
      encodingFrames: z.number().int(),
      fromSpool: z.boolean(),
      /** An encoder takes its frames; false while it waits for an encoder slot. */
      started: z.boolean(),
    }),
  ),
});

export type RecordingStatus = z.output<typeof recordingStatusSchema>;

export type { RecordingHandle } from './session-recording';

/**
 * Owns the recordings: one recorder per session, at most RECORDING_MAX_ENCODERS encoding at once
 * (a session beyond that is encoded from its spool when a slot frees), the `recordings` rows and
 * their states recording → finalizing → ready | failed.
 */
@Injectable()
export class RecordingService implements OnModuleDestroy {
  private readonly logger = new Logger(RecordingService.name);
  readonly maxEncoders: number;
  private readonly slots: EncoderSlots;
  /** Pass-through recorders, which encode nothing: counted, never limited. */
  private readonly passthroughSlots = new EncoderSlots(Number.POSITIVE_INFINITY);
  /** Behind encoders that a `close` waits for: a few run at the service's priority. */
  private readonly finishLanes: FinishLanes;
  /** Client images: one bounded queue with per-session budgets, decoded in child processes. */
  private readonly imageWork: ImageWork;
  private readonly decoder: ImageDecoderPool;
  /** Sessions with frames to record (running or waiting for a slot): their backlog, by id. */
  private readonly recorders = new Map<string, () => RecorderBacklog>();
  readonly dir: string;
  private readonly ffmpegPath: string;
  /**
   * ffmpeg and the MP4 files of every recorder started from now on. Replaceable so a test can
   * give one session an encoder and muxer that fail (fault isolation); nothing else sets it.
   */
  media: RecorderMedia = FFMPEG_RECORDER_MEDIA;
  /**
   * Video frames encoded since the process started, in reference frames (a frame of
   * RECORDING_WIDTH × RECORDING_HEIGHT weighs 1; others by their pixels): what `CapacityService`
   * measures the node's recording capacity with.
   */
  encodedFrames = 0;
  private readonly readyListeners: Array<() => void> = [];

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    @InjectRepository(RecordingEntity) private readonly recordings: Repository<RecordingEntity>,
    @InjectRepository(SessionMessageEntity)
    private readonly messages: Repository<SessionMessageEntity>,
    private readonly remote: RemoteRecordings,
    private readonly work: RecordingWorkStore,
  ) {
    this.maxEncoders = config.RECORDING_MAX_ENCODERS ?? availableParallelism() * ENCODERS_PER_CORE;
    this.slots = new EncoderSlots(this.maxEncoders);
    this.finishLanes = new FinishLanes(availableParallelism());
    // One core is left to the event loop, the encoders and the database by default.
    const decoders = config.IMAGE_DECODE_CONCURRENCY ?? Math.max(1, availableParallelism() - 1);
    this.imageWork = new ImageWork({
      concurrency: decoders,
      budgetMsPerS: config.IMAGE_SESSION_BUDGET_MS_PER_S,
    });
    this.decoder = new ImageDecoderPool(decoders);
    this.dir = recordingsDirOf(config);
    mkdirSync(this.dir, { recursive: true });
    this.ffmpegPath = locateTool('ffmpeg', config.FFMPEG_PATH).path;
    // Encoders start through a helper process: started now, it is forked from a small service.
    PROCESS_STARTER.warmUp();
  }

  /** Encoder slots and each live recorder's backlog, for operators and benchmarks. */
  status(): RecordingStatus {
    return {
      encoders: { active: this.slots.active, waiting: this.slots.waiting, max: this.maxEncoders },
      images: { ...this.imageWork.stats, decoderProcesses: this.decoder.processes },
      recorders: [...this.recorders].map(([sessionId, backlog]) => {
        const { frames, encoding, fromSpool, started } = backlog();
        return { sessionId, backlogFrames: frames, encodingFrames: encoding, fromSpool, started };
      }),
    };
  }

  /** Called after each recording became ready (the decode check's wake-up). */
  onReady(listener: () => void): void {
    this.readyListeners.push(listener);
  }

  /** The decoder processes end with the service. */
  onModuleDestroy(): void {
    this.decoder.close();
  }

  outputSize(session: Pick<SessionEntity, 'recordingSettings'>): { width: number; height: number } {
    return (
      session.recordingSettings ?? {
        width: this.config.RECORDING_WIDTH,
        height: this.config.RECORDING_HEIGHT,
      }
    );
  }

  /**
   * The cues of a session's recording: its messages that arrived while it was recorded (a
   * `recording_ms`), by arrival. The text track and the `.vtt` sidecar are both made of these.
   */
  async messageCues(sessionId: string): Promise<TextCue[]> {
    const rows = await this.messages.find({
      select: { direction: true, body: true, recordingMs: true },
      where: { sessionId, recordingMs: Not(IsNull()) },
      order: { recordingMs: 'ASC', createdAt: 'ASC', id: 'ASC' },
    });
    return messageCues(
      rows.map((row) => ({
        direction: row.direction,
        body: row.body,
        recordingMs: row.recordingMs ?? 0,
      })),
    );
  }

  /** Reference frames per frame of a recording of this size: its pixels over the default's. */
  weightOf(size: { width: number; height: number }): number {
    return (
      (size.width * size.height) / (this.config.RECORDING_WIDTH * this.config.RECORDING_HEIGHT)
    );
  }

  /** Recordings this node may encode at once (a worker claims no more). */
  get freeSlots(): number {
    return Math.max(0, this.maxEncoders - this.slots.active - this.slots.waiting);
  }

  /**
   * Starts (or, after a restart, restarts from the spool) the recording of a session. A new
   * session takes an encoder slot with its first frame, so open but idle sessions hold none. With
   * a free slot a `live` recorder is fed from memory; without one the recorder waits and then reads
   * everything from the spool. On a gateway the recording is handed to the workers instead.
   */
  async begin(
    session: Pick<SessionEntity, 'id' | 'video' | 'audio' | 'recordingSettings'>,
    spoolPath: string,
    events: RecorderEvents,
    fromSpool: boolean,
  ): Promise<RecordingHandle> {
    if (this.config.NODE_ROLE === 'gateway') {
      return this.handOver(session, events);
    }
    const existing = await this.recordings.findOneBy({ sessionId: session.id });
    const id = existing?.id ?? randomUUID();
    const { outputPath, size, slots } = this.planOf(session);
    // A spool with frames in it is recorded now; a new session waits for its first frame.
    const eagerSlot = fromSpool ? slots.tryAcquire() : null;
    const status = eagerSlot === false ? 'pending' : 'recording';
    try {
      if (existing) {
        await this.recordings.update(
          { id },
          { status, failureReason: null, updatedAt: new Date() },
        );
      } else {
        await this.recordings.insert({
          id,
          sessionId: session.id,
          status,
          path: outputPath,
          width: size.width,
          height: size.height,
        });
      }
    } catch (err) {
      // The slot taken above has no recording to own it yet.
      if (eagerSlot) {
        slots.release();
      }
      throw err;
    }
    return this.recordingOf(id, session, spoolPath, events, fromSpool, false, eagerSlot);
  }

  /**
   * A worker's recording of a gateway's session (NODE_ROLE=worker): from the start of its spool
   * (whatever an earlier worker made is replaced), following the file as the gateway appends.
   * The caller wakes it with `durable()` when the file may have grown.
   */
  async follow(
    id: string,
    session: Pick<SessionEntity, 'id' | 'video' | 'audio' | 'recordingSettings'>,
    spoolPath: string,
    events: RecorderEvents,
  ): Promise<SessionRecording> {
    const { slots } = this.planOf(session);
    const slot = slots.tryAcquire();
    try {
      await this.recordings.update(
        { id },
        { status: slot ? 'recording' : 'pending', failureReason: null, updatedAt: new Date() },
      );
    } catch (err) {
      if (slot) {
        slots.release();
      }
      throw err;
    }
    return this.recordingOf(id, session, spoolPath, events, true, true, slot);
  }

  /** On a gateway: the `recordings` row, and its work for the workers. */
  private async handOver(
    session: Pick<SessionEntity, 'id' | 'video' | 'audio' | 'recordingSettings'>,
    events: RecorderEvents,
  ): Promise<RecordingHandle> {
    const existing = await this.recordings.findOneBy({ sessionId: session.id });
    const id = existing?.id ?? randomUUID();
    if (!existing) {
      const { outputPath, size } = this.planOf(session);
      await this.recordings.insert({
        id,
        sessionId: session.id,
        status: 'pending',
        path: outputPath,
        width: size.width,
        height: size.height,
      });
    }
    // Not handed over anew when a worker holds it already (a session resumed after its gateway
    // died): that worker goes on following the same spool.
    if ((await this.work.handOver(id, session.id)) && existing) {
      await this.recordings.update(
        { id },
        { status: 'pending', failureReason: null, updatedAt: new Date() },
      );
    }
    return this.remote.handle(id, events);
  }

  /** Where a session's recording goes, at what size, and which encoder slots it uses. */
  private planOf(session: Pick<SessionEntity, 'id' | 'video' | 'recordingSettings'>): {
    outputPath: string;
    passthrough: PassthroughVideo | null;
    size: { width: number; height: number };
    slots: EncoderSlots;
  } {
    const passthrough = passthroughOf(session.video);
    return {
      outputPath: join(this.dir, `${session.id}.mp4`),
      passthrough,
      // Compressed video is recorded as sent, at its coded size.
      size: passthrough ? session.video : this.outputSize(session),
      // A pass-through recorder runs no encoder: it never waits for one of the node's slots.
      slots: passthrough ? this.passthroughSlots : this.slots,
    };
  }

  private recordingOf(
    id: string,
    session: Pick<SessionEntity, 'id' | 'video' | 'audio' | 'recordingSettings'>,
    spoolPath: string,
    events: RecorderEvents,
    fromSpool: boolean,
    following: boolean,
    eagerSlot: boolean | null,
  ): SessionRecording {
    const { outputPath, passthrough, size, slots } = this.planOf(session);
    const weight = passthrough ? PASSTHROUGH_FRAME_WEIGHT : this.weightOf(size);
    const recorderSession: RecorderSession = {
      id: session.id,
      fps: session.video.fps ?? this.config.RECORDING_FPS,
      audio: session.audio,
      width: size.width,
      height: size.height,
      declared: { width: session.video.width, height: session.video.height },
      passthrough,
    };
    const spoolBytes = fromSpool && !following ? fileSize(spoolPath) : 0;
    return new SessionRecording(
      {
        id,
        sessionId: session.id,
        spoolPath,
        fromSpool,
        following,
        keepSpool: this.config.KEEP_SPOOL,
        slots,
        rows: this.recordings,
        logger: this.logger,
        loadCues: () => this.messageCues(session.id),
        decodeCheck: this.config.RECORDING_DECODE_CHECK,
        onReady: () => this.readyListeners.forEach((listener) => listener()),
        makeRecorder: (mode, background, onFailed) =>
          new SessionRecorder(
            {
              config: this.config,
              logger: this.logger,
              ffmpegPath: this.ffmpegPath,
              spoolPath,
              outputPath,
              events,
              media: this.media,
              finishLanes: this.finishLanes,
              tailEncoders: this.config.RECORDING_TAIL_ENCODERS || availableParallelism(),
              imageWork: this.imageWork,
              decoder: this.decoder,
              onFailed,
              onEncoded: () => {
                this.encodedFrames += weight;
              },
            },
            recorderSession,
            mode,
            mode === 'spool' ? Math.max(spoolBytes, fileSize(spoolPath)) : spoolBytes,
            background,
          ),
        track: (backlog) => {
          if (backlog) {
            this.recorders.set(session.id, backlog);
          } else {
            this.recorders.delete(session.id);
          }
        },
      },
      eagerSlot,
    );
  }
}

/** The pass-through settings of a compressed session's video; null for JPEG images. */
function passthroughOf(video: VideoSettings): PassthroughVideo | null {
  const codec = video.codec ?? 'jpeg';
  const family = videoCodecFamily(codec);
  if (family === null || family === 'jpeg') {
    return null;
  }
  return {
    family,
    codec,
    description: video.description ? Buffer.from(video.description, 'base64') : null,
  };
}

function fileSize(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}
