import type { MessageDirection } from '../sessions/session-message.entity';

/**
 * Longest a message's cue is shown; it ends sooner when the next message arrives. One caption at a
 * time, the way subtitles read: overlapping cues would stack, and mediabunny writes every cue
 * active at a time into each sample (measured: 1 000 messages 20 ms apart with 5 s cues took 12 s
 * to write, 10 000 took 92 s).
 */
export const CUE_MAX_MS = 5_000;

/**
 * A cue shows at most this many characters of a message (then `…`): it is a caption, not the
 * message's archive, which stays whole in `session_messages`.
 */
export const CUE_MAX_CHARS = 1_000;

/**
 * Cues must end before 100 hours: mediabunny's WebVTT parser reads two-digit hours only (a
 * `100:00:00.000` would be read as a later part of the line). A session is a business
 * transaction; no real one comes near.
 */
export const CUE_MAX_END_MS = 100 * 3_600_000;

/** A message on its recording's timeline, as `session_messages` keeps it. */
export interface RecordedMessage {
  direction: MessageDirection;
  body: unknown;
  /** Arrival on the recording's timeline (ms of capture time); never null here. */
  recordingMs: number;
}

/** One caption: what arrived at one moment, shown until the next message (CUE_MAX_MS at most). */
export interface TextCue {
  startMs: number;
  endMs: number;
  /**
   * WebVTT cue text, escaped, safe to place in a cue as it is: one line per message (several when
   * messages arrived in the same millisecond), each in a voice naming who sent it (`client`: the
   * front end, `server`: pushed by the API).
   */
  text: string;
}

/** The cues of a session's messages, by arrival (ties keep the given order). */
export function messageCues(messages: readonly RecordedMessage[]): TextCue[] {
  const sorted = messages
    .map((m, i) => ({ m, i }))
    .sort((a, b) => a.m.recordingMs - b.m.recordingMs || a.i - b.i)
    .map(({ m }) => m);
  const cues: TextCue[] = [];
  for (const m of sorted) {
    const line = `<v ${m.direction === 'in' ? 'client' : 'server'}>${cueText(m.body)}</v>`;
    const last = cues.at(-1);
    if (last?.startMs === m.recordingMs) {
      // Same millisecond: one cue, so that neither lasts 0 ms.
      last.text += `\n${line}`;
      continue;
    }
    if (last) {
      last.endMs = Math.min(last.endMs, m.recordingMs);
    }
    cues.push({ startMs: m.recordingMs, endMs: m.recordingMs + CUE_MAX_MS, text: line });
  }
  return cues.filter((cue) => cue.endMs < CUE_MAX_END_MS);
}

/**
 * A message body as a caption: its `text` field when that is a non-blank string, a string body
 * as it is, anything else as compact JSON. Whatever the body holds, the result cannot end the cue
 * or start another: no blank line (a cue ends at one), `&`, `<` and `>` escaped (so no `-->`, no
 * tags, no timestamps), no control characters, no lone surrogates.
 */
export function cueText(body: unknown): string {
  const field = isRecord(body) ? body.text : undefined;
  const raw =
    typeof field === 'string' && field.trim() !== ''
      ? field
      : typeof body === 'string' && body.trim() !== ''
        ? body
        : (JSON.stringify(body) ?? 'null');
  const lines = raw
    .replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, '\uFFFD')
    .replace(/\r\n?/g, '\n')
    // Control characters are what this strips: C0 but tab and line feed, DEL, C1, and the
    // Unicode line separators.
    // eslint-disable-next-line no-control-regex
    .replace(/[\u0000-\u0008\u000B-\u001F\u007F-\u009F\u2028\u2029]/g, '')
    .split('\n')
    .map((line) => line.trimEnd())
    .filter((line) => line.trim() !== '');
  const chars = Array.from(lines.join('\n'));
  const shown =
    chars.length > CUE_MAX_CHARS ? `${chars.slice(0, CUE_MAX_CHARS).join('')}…` : chars.join('');
  return shown.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** `hh:mm:ss.mmm`, as WebVTT writes a time. */
export function webVttTime(ms: number): string {
  const whole = Math.max(0, Math.round(ms));
  const h = Math.floor(whole / 3_600_000);
  const m = Math.floor(whole / 60_000) % 60;
  const s = Math.floor(whole / 1000) % 60;
  const frac = whole % 1000;
  return `${pad(h, 2)}:${pad(m, 2)}:${pad(s, 2)}.${pad(frac, 3)}`;
}

/** One cue block, ending with the blank line that separates it from the next. */
export function cueBlock(cue: TextCue): string {
  return `${webVttTime(cue.startMs)} --> ${webVttTime(cue.endMs)}\n${cue.text}\n\n`;
}

/** The first line of every WebVTT file, then the blank line before the first cue. */
export const WEBVTT_HEADER = 'WEBVTT\n\n';

/** A whole WebVTT file: the sidecar of a recording, the same cues as its text track. */
export function renderWebVtt(cues: readonly TextCue[]): string {
  return WEBVTT_HEADER + cues.map(cueBlock).join('');
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function pad(n: number, width: number): string {
  return String(n).padStart(width, '0');
}
