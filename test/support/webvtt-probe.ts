import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { Pool } from 'pg';
import { findOnPath, locateTool } from '../../src/media/ffmpeg-locator';
import type { Sent } from './camera';

const run = promisify(execFile);

/** A cue as read back from a file: its times and its cue text (voice tag included). */
export interface ReadCue {
  startMs: number;
  endMs: number;
  text: string;
}

/** What ffprobe says of a recording's WebVTT track, and the cues in its samples. */
export interface TextTrackProbe {
  /** ffprobe's `codec_type` (`data`: no ffmpeg demuxes `wvtt` as subtitles). */
  codecType: string;
  /** The sample entry's four-character code. */
  codecTag: string;
  cues: ReadCue[];
}

interface ProbedStream {
  index: number;
  codec_type?: string;
  codec_tag_string?: string;
  start_time?: string;
  duration?: string;
}

interface ProbedPacket {
  stream_index: number;
  pts_time: string;
  data?: string;
}

/**
 * Reads the `wvtt` track of an MP4 with ffprobe: sample times from the container (ffprobe's own
 * reading of the fragments), cue text from the samples' ISO/IEC 14496-30 boxes, which ffmpeg does
 * not decode. A cue spanning several samples (overlapping cues) carries the same `vsid` in each and
 * is read as one cue from its first sample to the end of its last.
 */
export async function probeTextTrack(path: string, ffprobe?: string): Promise<TextTrackProbe> {
  const bin = ffprobe ?? locateTool('ffprobe', undefined).path;
  const { stdout } = await run(
    bin,
    ['-v', 'error', '-show_streams', '-show_packets', '-show_data', '-of', 'json', path],
    { maxBuffer: 256 * 1024 * 1024 },
  );
  const probed = JSON.parse(stdout) as { streams: ProbedStream[]; packets: ProbedPacket[] };
  const stream = probed.streams.find((s) => s.codec_tag_string === 'wvtt');
  if (!stream) {
    throw new Error(`${path} has no wvtt track`);
  }
  const end = seconds(stream.start_time) + seconds(stream.duration);
  const samples = probed.packets
    .filter((p) => p.stream_index === stream.index)
    .map((p) => ({ at: seconds(p.pts_time), boxes: readBoxes(hexDump(p.data ?? '')) }))
    .sort((a, b) => a.at - b.at);
  const open = new Map<string, ReadCue>();
  const cues: ReadCue[] = [];
  samples.forEach((sample, i) => {
    const sampleEnd = samples[i + 1]?.at ?? end;
    const seen = new Set<string>();
    sample.boxes
      .filter((box) => box.type === 'vttc')
      .forEach((box, n) => {
        const children = readBoxes(box.body);
        const vsid = children.find((c) => c.type === 'vsid');
        const key = vsid ? `vsid:${vsid.body.readUInt32BE(0)}` : `sample:${i}:${n}`;
        const text = children.find((c) => c.type === 'payl')?.body.toString('utf8') ?? '';
        seen.add(key);
        const cue = open.get(key);
        if (cue) {
          cue.endMs = Math.round(sampleEnd * 1000);
        } else {
          const fresh = {
            startMs: Math.round(sample.at * 1000),
            endMs: Math.round(sampleEnd * 1000),
            text,
          };
          open.set(key, fresh);
          cues.push(fresh);
        }
      });
    for (const key of [...open.keys()]) {
      if (!seen.has(key)) {
        open.delete(key);
      }
    }
  });
  return {
    codecType: stream.codec_type ?? 'unknown',
    codecTag: stream.codec_tag_string ?? '',
    cues,
  };
}

/**
 * Parses a WebVTT file strictly as this service writes it: the header, then blocks of a timing
 * line and text lines, each block ended by one blank line. Anything else is an error, so a
 * message body that broke the file out of its cue is caught here.
 */
export function parseWebVtt(file: string): ReadCue[] {
  if (!file.startsWith('WEBVTT\n\n')) {
    throw new Error('no WEBVTT header');
  }
  const rest = file.slice('WEBVTT\n\n'.length);
  if (rest === '') {
    return [];
  }
  if (!rest.endsWith('\n\n')) {
    throw new Error('the last cue is not ended by a blank line');
  }
  return rest
    .slice(0, -2)
    .split('\n\n')
    .map((block) => {
      const [timing, ...text] = block.split('\n');
      const match =
        /^(\d{2,}):(\d{2}):(\d{2})\.(\d{3}) --> (\d{2,}):(\d{2}):(\d{2})\.(\d{3})$/.exec(
          timing ?? '',
        );
      if (!match || text.length === 0 || text.some((line) => line.includes('-->'))) {
        throw new Error(`not a cue block: ${JSON.stringify(block)}`);
      }
      const ms = (h: string, m: string, s: string, f: string) =>
        ((Number(h) * 60 + Number(m)) * 60 + Number(s)) * 1000 + Number(f);
      const [, h1, m1, s1, f1, h2, m2, s2, f2] = match as unknown as string[];
      return { startMs: ms(h1, m1, s1, f1), endMs: ms(h2, m2, s2, f2), text: text.join('\n') };
    });
}

/** Every ffprobe at hand: the bundled static build, and the system's (Debian's) when installed. */
export function ffprobes(): string[] {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const bundled = (require('@ffprobe-installer/ffprobe') as { path: string }).path;
  const system = findOnPath('ffprobe');
  return [
    ...new Set([bundled, locateTool('ffprobe', undefined).path, ...(system ? [system] : [])]),
  ];
}

/** The text track as each ffprobe reads it; they must agree. */
export async function textTrackCues(path: string): Promise<ReadCue[]> {
  const [first, ...others] = await Promise.all(ffprobes().map((bin) => probeTextTrack(path, bin)));
  if (!first) {
    throw new Error('no ffprobe');
  }
  // No ffmpeg version demuxes `wvtt` as subtitles: it lists the track as data with its tag.
  expect([first.codecType, first.codecTag]).toEqual(['data', 'wvtt']);
  for (const other of others) {
    expect(other).toEqual(first);
  }
  return first.cues;
}

/** A session's messages as stored: arrival, its time on the recording, and the media origin. */
export async function storedMessages(
  db: Pool,
  sessionId: string,
): Promise<Map<string, { recordingMs: number | null; arrivalMs: number | null }>> {
  const rows = await db.query<{ client_id: string; recording_ms: string | null; arrival: string }>(
    `SELECT m.client_id, m.recording_ms,
            (extract(epoch FROM m.created_at - s.media_origin_at) * 1000)::text AS arrival
     FROM session_messages m JOIN sessions s ON s.id = m.session_id
     WHERE m.session_id = $1`,
    [sessionId],
  );
  return new Map(
    rows.rows.map((r) => [
      r.client_id,
      {
        recordingMs: r.recording_ms === null ? null : Number(r.recording_ms),
        arrivalMs: r.arrival === null ? null : Number(r.arrival),
      },
    ]),
  );
}

/**
 * Where a message must sit on the recording's timeline, from the client's clock alone: the server
 * received it between sending and its acknowledgement, and the first frame (capture time 0)
 * likewise; so its time is within [sent − first frame acked, acked − first frame sent].
 */
export function bracket(message: Sent, firstFrame: Sent): [number, number] {
  return [message.sentAt - firstFrame.ackedAt, message.ackedAt - firstFrame.sentAt];
}

/** The bytes of ffprobe's `-show_data` hex dump (`00000000: 0000 0008 7674 7465  ....vtte`). */
function hexDump(dump: string): Buffer {
  const hex = dump
    .split('\n')
    .filter((line) => /^[0-9a-f]{8}: /.test(line))
    .map((line) => line.slice(10, 50).replace(/ /g, ''))
    .join('');
  return Buffer.from(hex, 'hex');
}

/** The boxes (size, type, body) one after another in `data`. */
function readBoxes(data: Buffer): Array<{ type: string; body: Buffer }> {
  const boxes: Array<{ type: string; body: Buffer }> = [];
  for (let at = 0; at + 8 <= data.length;) {
    const size = data.readUInt32BE(at);
    if (size < 8 || at + size > data.length) {
      throw new Error(`bad box at ${at}: size ${size} of ${data.length}`);
    }
    boxes.push({
      type: data.toString('latin1', at + 4, at + 8),
      body: data.subarray(at + 8, at + size),
    });
    at += size;
  }
  return boxes;
}

function seconds(value: string | undefined): number {
  const parsed = Number.parseFloat(value ?? '');
  return Number.isFinite(parsed) ? parsed : 0;
}
