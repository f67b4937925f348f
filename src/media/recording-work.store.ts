import { Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import type { ClientConfig, Pool } from 'pg';
import type { DataSource } from 'typeorm';
import type { ClosedRecording } from '../protocol/messages';

/** A gateway handed a recording over: idle workers claim now rather than at their next poll. */
export const RECORDING_WORK_CHANNEL = 'framegate_recording_work';
/** A session ended: `<recording id>:<last seq>`, for the worker holding its recording. */
export const RECORDING_CLOSE_CHANNEL = 'framegate_recording_close';
/** A recording is ready or failed: its `closed.recording` as JSON, for the gateway waiting. */
export const RECORDING_DONE_CHANNEL = 'framegate_recording_done';

/** A failure reason in a notification: Postgres takes payloads under 8000 bytes. */
const MAX_REASON_CHARS = 1_000;

/** A claimed recording. */
export interface ClaimedWork {
  recordingId: string;
  sessionId: string;
  /** Set once the session ended: record up to here, then finish. */
  finalSeq: number | null;
  attempts: number;
}

/**
 * The `recording_work` rows (NODE_ROLE gateway and worker) and the notifications that go with
 * them. Every statement is per recording or per batch of them, never per frame; time is the
 * database's (`now()`), so the nodes' clocks do not have to agree.
 */
@Injectable()
export class RecordingWorkStore {
  private readonly pool: Pool;

  constructor(@InjectDataSource() dataSource: DataSource) {
    this.pool = (dataSource.driver as unknown as { master: Pool }).master;
  }

  /** Connection settings for a listening connection of its own. */
  get connectionOptions(): ClientConfig {
    return this.pool.options;
  }

  /**
   * The gateway hands a recording to the workers. False when it already was (a session resumed
   * here after its gateway died): the worker holding it goes on following the same spool.
   */
  async handOver(recordingId: string, sessionId: string): Promise<boolean> {
    const { rows } = await this.pool.query(
      `WITH i AS (
         INSERT INTO recording_work (recording_id, session_id) VALUES ($1, $2)
         ON CONFLICT (recording_id) DO NOTHING RETURNING recording_id)
       SELECT pg_notify($3, recording_id::text) FROM i`,
      [recordingId, sessionId, RECORDING_WORK_CHANNEL],
    );
    return rows.length > 0;
  }

  /**
   * The session ended at `lastSeq`: stored on the row (a worker claiming it later reads it) and
   * told to the worker holding it. False when there is no such work (already finished).
   */
  async close(recordingId: string, lastSeq: number): Promise<boolean> {
    const { rows } = await this.pool.query(
      `WITH u AS (
         UPDATE recording_work SET final_seq = $2 WHERE recording_id = $1 RETURNING recording_id)
       SELECT pg_notify($3, recording_id::text || ':' || $2::text) FROM u`,
      [recordingId, lastSeq, RECORDING_CLOSE_CHANNEL],
    );
    return rows.length > 0;
  }

  /**
   * Up to `limit` recordings nobody holds (new, or their worker stopped renewing), oldest first,
   * leased to `owner`. SKIP LOCKED: workers claiming at once take different rows.
   */
  async claim(owner: string, limit: number, leaseMs: number): Promise<ClaimedWork[]> {
    const { rows } = await this.pool.query<{
      recording_id: string;
      session_id: string;
      final_seq: number | null;
      attempts: number;
    }>(
      `UPDATE recording_work w
          SET lease_owner = $1, lease_expires_at = now() + make_interval(secs => $3::float8 / 1000),
              attempts = w.attempts + 1
         FROM (SELECT recording_id FROM recording_work
                WHERE lease_owner IS NULL OR lease_expires_at < now()
                ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED) c
        WHERE w.recording_id = c.recording_id
        RETURNING w.recording_id, w.session_id, w.final_seq, w.attempts`,
      [owner, limit, leaseMs],
    );
    return rows.map((r) => ({
      recordingId: r.recording_id,
      sessionId: r.session_id,
      finalSeq: r.final_seq,
      attempts: r.attempts,
    }));
  }

  /**
   * Extends `owner`'s leases on `ids` in one statement. Resolves with those it still holds (and
   * their final seq, in case the close notification was missed); the others went to another
   * worker or are finished.
   */
  async renew(
    owner: string,
    ids: readonly string[],
    leaseMs: number,
  ): Promise<Map<string, number | null>> {
    const { rows } = await this.pool.query<{ recording_id: string; final_seq: number | null }>(
      `UPDATE recording_work
          SET lease_expires_at = now() + make_interval(secs => $3::float8 / 1000)
        WHERE lease_owner = $1 AND recording_id = ANY($2::uuid[])
        RETURNING recording_id, final_seq`,
      [owner, ids, leaseMs],
    );
    return new Map(rows.map((r) => [r.recording_id, r.final_seq]));
  }

  /** The recording is ready or failed: the work is gone, and the gateway waiting is told. */
  async done(recordingId: string, owner: string, closed: ClosedRecording): Promise<boolean> {
    const payload = JSON.stringify({
      ...closed,
      ...(closed.reason ? { reason: closed.reason.slice(0, MAX_REASON_CHARS) } : {}),
    });
    const { rows } = await this.pool.query(
      `WITH d AS (
         DELETE FROM recording_work WHERE recording_id = $1 AND lease_owner = $2
         RETURNING recording_id)
       SELECT pg_notify($3, $4) FROM d`,
      [recordingId, owner, RECORDING_DONE_CHANNEL, payload],
    );
    return rows.length > 0;
  }

  /** A stopping worker gives its recordings back, so another takes them now, not at expiry. */
  async releaseAll(owner: string): Promise<void> {
    await this.pool.query(
      `WITH u AS (
         UPDATE recording_work SET lease_owner = NULL, lease_expires_at = NULL
          WHERE lease_owner = $1 RETURNING recording_id)
       SELECT pg_notify($2, recording_id::text) FROM u`,
      [owner, RECORDING_WORK_CHANNEL],
    );
  }
}
