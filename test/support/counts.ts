import type { Pool } from 'pg';
import { Track } from '../../src/protocol/media-header';
import { probe } from './media';
import { spooledFrames } from './spool-reader';
import { waitFor } from './wait';

/** Every count of one ended session, read from each place that reports it. */
export interface SessionCountsSeen {
  spoolRecords: number;
  spoolVideo: number;
  spoolAudio: number;
  spoolLastSeq: number;
  row: { lastSeq: number; video: number; audio: number; rejected: number; bytes: number };
  recording: { status: string; frameCount: number | null; probedFrames: number | null };
  /** `frames` of the session's last `closed`/`abandoned` audit event. */
  auditedFrames: number;
}

/**
 * Reads what the spool, the session row, the recordings row, ffprobe and the audit trail say of
 * an ended session (the service must run with KEEP_SPOOL=true), and checks they agree:
 * `closed.frames` = video + audio + rejected = the spool's records, last_seq = the spool's, the
 * recording's frame count = the row's video frames = what ffprobe decodes.
 */
export async function expectCountsAgree(
  db: Pool,
  dataDir: string,
  sessionId: string,
  closedFrames?: number,
): Promise<SessionCountsSeen> {
  await waitFor(
    async () => {
      const r = await db.query<{ status: string }>(
        `SELECT status FROM recordings WHERE session_id = $1`,
        [sessionId],
      );
      return r.rows[0]?.status === 'ready' || r.rows[0]?.status === 'failed';
    },
    60_000,
    `recording of ${sessionId} finished`,
  );
  const spool = await spooledFrames(dataDir, sessionId);
  const rowResult = await db.query<{
    last_seq: string;
    video_frames: string;
    audio_frames: string;
    rejected_frames: string;
    bytes_in: string;
  }>(
    `SELECT last_seq, video_frames, audio_frames, rejected_frames, bytes_in
     FROM sessions WHERE id = $1`,
    [sessionId],
  );
  const r = rowResult.rows[0];
  const row = {
    lastSeq: Number(r.last_seq),
    video: Number(r.video_frames),
    audio: Number(r.audio_frames),
    rejected: Number(r.rejected_frames),
    bytes: Number(r.bytes_in),
  };
  const rec = (
    await db.query<{ status: string; frame_count: number | null; path: string | null }>(
      `SELECT status, frame_count, path FROM recordings WHERE session_id = $1`,
      [sessionId],
    )
  ).rows[0];
  const probedFrames =
    rec.status === 'ready' && rec.path ? (await probe(rec.path)).videoFrames : null;
  let auditedFrames = -1;
  // Audit records are written in batches: wait for the end event to land.
  await waitFor(
    async () => {
      const e = await db.query<{ detail: { frames?: number } }>(
        `SELECT detail FROM session_events WHERE session_id = $1
           AND type IN ('closed', 'abandoned') ORDER BY at DESC LIMIT 1`,
        [sessionId],
      );
      auditedFrames = e.rows[0]?.detail.frames ?? -1;
      return auditedFrames >= 0;
    },
    15_000,
    `end event of ${sessionId} audited`,
  );
  const seen: SessionCountsSeen = {
    spoolRecords: spool.length,
    spoolVideo: spool.filter((f) => f.track === (Track.Video as number)).length,
    spoolAudio: spool.filter((f) => f.track === (Track.Audio as number)).length,
    spoolLastSeq: spool.reduce((m, f) => Math.max(m, f.seq), 0),
    row,
    recording: { status: rec.status, frameCount: rec.frame_count, probedFrames },
    auditedFrames,
  };
  const spoolBytes = spool.reduce((n, f) => n + 12 + f.payload.length, 0);

  if (closedFrames !== undefined) {
    expect(closedFrames).toBe(seen.spoolRecords);
  }
  expect(row.video + row.audio + row.rejected).toBe(seen.spoolRecords);
  expect(row.audio).toBe(seen.spoolAudio);
  expect(row.video + row.rejected).toBe(seen.spoolVideo);
  expect(row.lastSeq).toBe(seen.spoolLastSeq);
  expect(row.bytes).toBe(spoolBytes);
  expect(auditedFrames).toBe(seen.spoolRecords);
  if (rec.status === 'ready') {
    expect(rec.frame_count).toBe(row.video);
    expect(probedFrames).toBe(row.video);
  }
  return seen;
}
