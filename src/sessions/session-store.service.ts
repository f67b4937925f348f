import { Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { randomUUID } from 'node:crypto';
import type { DataSource } from 'typeorm';
import { nodeAliveSql } from '../cluster/membership.service';
import type { MessageDirection } from './session-message.entity';
import type { SessionStatus } from './session.types';

/** A session's counters: what its spool holds. */
export interface SessionCounts {
  lastSeq: number;
  videoFrames: number;
  audioFrames: number;
  rejectedFrames: number;
  bytesIn: number;
}

/** The entry a status change appends to `status_history`: $2 status, $3 time (text), $4 cause. */
const HISTORY_ENTRY = `jsonb_build_array(
  jsonb_build_object('status', $2::text, 'at', $3::text, 'cause', $4::text))`;

/** Counters of one session, written in batches (never per frame). */
export interface SessionStats extends SessionCounts {
  id: string;
}

/**
 * The session writes of the stream runtime: status transitions (each appended to the status
 * history with its time and cause), batched counters, and messages. Raw SQL: each is one
 * statement that TypeORM's repository API would turn into several.
 */
@Injectable()
export class SessionStore {
  constructor(@InjectDataSource() private readonly db: DataSource) {}

  /**
   * Moves a session from one of `from` to `to`; false when it was in none of them (someone else
   * moved it first), so concurrent transitions cannot both win. With `owner`, only while that node
   * owns the session (a sweeper must not end a session another node has just taken).
   */
  async transition(
    id: string,
    from: readonly SessionStatus[],
    to: SessionStatus,
    cause: string,
    at: Date = new Date(),
    owner?: string,
  ): Promise<boolean> {
    const [, affected] = await this.db.query<[unknown[], number]>(
      `UPDATE sessions SET
         status = $2,
         status_history = status_history || ${HISTORY_ENTRY},
         updated_at = $5,
         interrupted_at = CASE WHEN $2 = 'interrupted' THEN $5 ELSE interrupted_at END,
         closed_at = CASE WHEN $2 IN ('closed', 'abandoned') THEN $5 ELSE closed_at END
       WHERE id = $1 AND status = ANY($6::text[]) AND ($7::text IS NULL OR node = $7)`,
      [id, to, at.toISOString(), cause, at, from, owner ?? null],
    );
    return affected > 0;
  }

  /**
   * A session's last counters and its end (`transition`) in one statement, so ending costs one
   * round trip and one commit, not two. The counters are written whenever `owner` (if given) owns
   * the row, as `saveStats` would; the status only moves from one of `from`. True when it moved.
   */
  async end(
    id: string,
    from: readonly SessionStatus[],
    to: 'closed' | 'abandoned',
    cause: string,
    at: Date,
    owner: string | undefined,
    counts: SessionCounts,
  ): Promise<boolean> {
    // The CTE locks the row and keeps its status from before the update for RETURNING.
    const [rows] = await this.db.query<[Array<{ moved: boolean }>, number]>(
      `WITH prev AS (
         SELECT id, status = ANY($6::text[]) AS moved FROM sessions
         WHERE id = $1 AND ($7::text IS NULL OR node = $7)
         FOR UPDATE)
       UPDATE sessions s SET
         last_seq = $8, video_frames = $9, audio_frames = $10, rejected_frames = $11,
         bytes_in = $12,
         status = CASE WHEN p.moved THEN $2 ELSE s.status END,
         status_history = CASE WHEN p.moved THEN s.status_history || ${HISTORY_ENTRY}
           ELSE s.status_history END,
         updated_at = $5,
         closed_at = CASE WHEN p.moved THEN $5 ELSE s.closed_at END
       FROM prev p WHERE s.id = p.id
       RETURNING p.moved`,
      [
        id,
        to,
        at.toISOString(),
        cause,
        at,
        from,
        owner ?? null,
        counts.lastSeq,
        counts.videoFrames,
        counts.audioFrames,
        counts.rejectedFrames,
        counts.bytesIn,
      ],
    );
    return rows.length > 0 && rows[0].moved;
  }

  /**
   * One statement for every dirty session of the node. With `whileStatus`, a row is written only
   * while the session is in one of those states (a recount must not overwrite the counters of an
   * end that happened meanwhile); with `owner`, only while that node owns the session (counters
   * of a node that has just let a session go must not overwrite the new owner's).
   */
  async saveStats(
    rows: readonly SessionStats[],
    whileStatus?: readonly SessionStatus[],
    owner?: string,
  ): Promise<void> {
    if (rows.length === 0) {
      return;
    }
    await this.db.query(
      `UPDATE sessions AS s SET
         last_seq = v.last_seq, video_frames = v.video_frames, audio_frames = v.audio_frames,
         rejected_frames = v.rejected_frames, bytes_in = v.bytes_in, updated_at = now()
       FROM unnest($1::uuid[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[])
         AS v(id, last_seq, video_frames, audio_frames, rejected_frames, bytes_in)
       WHERE s.id = v.id AND ($7::text[] IS NULL OR s.status = ANY($7::text[]))
         AND ($8::text IS NULL OR s.node = $8)`,
      [
        rows.map((r) => r.id),
        rows.map((r) => r.lastSeq),
        rows.map((r) => r.videoFrames),
        rows.map((r) => r.audioFrames),
        rows.map((r) => r.rejectedFrames),
        rows.map((r) => r.bytesIn),
        whileStatus ?? null,
        owner ?? null,
      ],
    );
  }

  /**
   * Stores a business message once: a resend with the same client id (after a resume) is a
   * no-op, so `msg.ack` can be answered again without a duplicate row, and the message keeps the
   * time of its first arrival. `at`: its arrival (`created_at`); `recordingMs`: the same moment on
   * the recording's timeline, null when it is not part of the recording.
   */
  async storeMessage(
    sessionId: string,
    direction: MessageDirection,
    clientId: string,
    body: unknown,
    sender: string,
    at: Date,
    recordingMs: number | null,
  ): Promise<void> {
    await this.db.query(
      `INSERT INTO session_messages
         (id, session_id, direction, client_id, body, sender, created_at, recording_ms)
       VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8)
       ON CONFLICT (session_id, direction, client_id) DO NOTHING`,
      [
        randomUUID(),
        sessionId,
        direction,
        clientId,
        JSON.stringify(body ?? null),
        sender,
        at.toISOString(),
        recordingMs,
      ],
    );
  }

  /**
   * Stores a message arriving `at` for a session that has no runtime on this node (interrupted and
   * not resumed since a restart, or ended), timed from its row: on the recording's timeline while the session
   * is open or interrupted (through `media_origin_at`; 0 before its first frame), outside it once
   * the session ended. The row is read `FOR SHARE`, so the message and the session's end are
   * ordered: a message timed as interrupted is stored before the end commits, and the recording,
   * finalized after the end, has it.
   */
  async storeMessageByStatus(
    sessionId: string,
    direction: MessageDirection,
    clientId: string,
    body: unknown,
    sender: string,
    at: Date,
  ): Promise<void> {
    await this.db.query(
      `INSERT INTO session_messages
         (id, session_id, direction, client_id, body, sender, created_at, recording_ms)
       SELECT $1, s.id, $3, $4, $5::jsonb, $6, $7,
         CASE WHEN s.status IN ('open', 'interrupted') THEN
           CASE WHEN s.media_origin_at IS NULL THEN 0
                ELSE GREATEST(0, floor(extract(epoch FROM $7::timestamptz - s.media_origin_at) * 1000))
           END
         END
       FROM sessions s WHERE s.id = $2
       FOR SHARE OF s
       ON CONFLICT (session_id, direction, client_id) DO NOTHING`,
      [
        randomUUID(),
        sessionId,
        direction,
        clientId,
        JSON.stringify(body ?? null),
        sender,
        at.toISOString(),
      ],
    );
  }

  /**
   * The wall-clock time of a session's capture time 0, written once: a later value (a frame
   * stored after a restart that lost it) never replaces the first.
   */
  async saveMediaOrigin(sessionId: string, at: Date): Promise<void> {
    await this.db.query(
      `UPDATE sessions SET media_origin_at = $2 WHERE id = $1 AND media_origin_at IS NULL`,
      [sessionId, at.toISOString()],
    );
  }

  /**
   * At start: sessions this node had live when it died cannot still be attached anywhere; they
   * become interrupted now, which opens their resume window.
   */
  async interruptOrphans(node: string): Promise<string[]> {
    const now = new Date();
    // For UPDATE … RETURNING, TypeORM's postgres driver answers [rows, affected count].
    const [rows] = await this.db.query<[Array<{ id: string }>, number]>(
      `UPDATE sessions SET
         status = 'interrupted',
         status_history = status_history || jsonb_build_array(
           jsonb_build_object('status', 'interrupted', 'at', $2::text, 'cause', 'node_restart')),
         updated_at = $3, interrupted_at = $3
       WHERE node = $1 AND status = 'open'
       RETURNING id`,
      [node, now.toISOString(), now],
    );
    return rows.map((r) => r.id);
  }

  /**
   * Sessions of this node whose row says `open` and was last written over `ageMs` ago: with no
   * runtime here (the caller checks), their transport went away while the database could not
   * take it.
   */
  async staleOpen(node: string, ageMs: number): Promise<string[]> {
    const rows = await this.db.query<Array<{ id: string }>>(
      `SELECT id FROM sessions
       WHERE node = $1 AND status = 'open' AND updated_at < now() - make_interval(secs => $2)`,
      [node, ageMs / 1000],
    );
    return rows.map((r) => r.id);
  }

  /** Interrupted sessions of this node whose resume window has passed. */
  async expiredInterrupted(node: string, windowMs: number): Promise<string[]> {
    const rows = await this.db.query<Array<{ id: string }>>(
      `SELECT id FROM sessions
       WHERE node = $1 AND status = 'interrupted' AND interrupted_at < now() - make_interval(secs => $2)`,
      [node, windowMs / 1000],
    );
    return rows.map((r) => r.id);
  }

  /**
   * Takes a session from node `from`, which the database counts dead (`deadAfterMs`), for node
   * `to`. One statement: of several nodes racing for it, one wins; a live owner is never passed
   * over. False when `from` no longer owns it, is alive, or the session ended.
   */
  async takeFromDead(id: string, from: string, to: string, deadAfterMs: number): Promise<boolean> {
    const [, affected] = await this.db.query<[unknown[], number]>(
      `UPDATE sessions s SET node = $3
       WHERE s.id = $1 AND s.node = $2 AND s.status IN ('open', 'interrupted')
         AND NOT EXISTS (SELECT 1 FROM nodes n WHERE n.id = $2 AND ${nodeAliveSql('n', '$4')})`,
      [id, from, to, deadAfterMs],
    );
    return affected > 0;
  }

  /**
   * The owner lets a session go to node `to` (a takeover): only while `from` owns it and it has
   * not ended. False otherwise.
   */
  async handOver(id: string, from: string, to: string): Promise<boolean> {
    const [, affected] = await this.db.query<[unknown[], number]>(
      `UPDATE sessions SET node = $3
       WHERE id = $1 AND node = $2 AND status IN ('open', 'interrupted')`,
      [id, from, to],
    );
    return affected > 0;
  }

  /**
   * Adopts up to `limit` sessions that dead nodes left open or interrupted: they move to `node`,
   * and an open one becomes interrupted, recorded as lost at its owner's last sign of life.
   * Several adopters split the work (SKIP LOCKED) and a session goes to one of them. Resolves with
   * the ids adopted.
   *
   * The resume window does not count the time between the owner's death and now: no node could
   * take the session back then (a resume got 1013 until the owner counted dead), so a client cut
   * off by a dead node has its whole window once the session is resumable again. An open session's
   * window starts now; an interrupted one's is moved on by that time.
   */
  async adoptOrphans(node: string, deadAfterMs: number, limit: number): Promise<string[]> {
    const now = new Date();
    const [rows] = await this.db.query<[Array<{ id: string }>, number]>(
      `WITH orphan AS (
         SELECT s.id, s.status AS was,
           COALESCE((SELECT COALESCE(n.stopped_at, n.heartbeat_at) FROM nodes n WHERE n.id = s.node),
                    $4::timestamptz) AS lost_at
         FROM sessions s
         WHERE s.status IN ('open', 'interrupted') AND s.node <> $1
           AND NOT EXISTS (SELECT 1 FROM nodes n WHERE n.id = s.node AND ${nodeAliveSql('n', '$2')})
         LIMIT $3
         FOR UPDATE OF s SKIP LOCKED)
       UPDATE sessions s SET
         node = $1,
         status = 'interrupted',
         status_history = CASE WHEN o.was = 'open' THEN s.status_history || jsonb_build_array(
           jsonb_build_object('status', 'interrupted', 'cause', 'node_lost',
             'at', to_char(o.lost_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')))
           ELSE s.status_history END,
         interrupted_at = CASE WHEN o.was = 'open' THEN $4
           ELSE LEAST($4, s.interrupted_at + ($4::timestamptz - GREATEST(o.lost_at, s.interrupted_at))) END,
         updated_at = $4
       FROM orphan o WHERE s.id = o.id
       RETURNING s.id`,
      [node, deadAfterMs, limit, now],
    );
    return rows.map((r) => r.id);
  }

  /**
   * Adopts up to `limit` ended sessions of dead nodes whose recordings are unfinished (the owner
   * died while finalizing, or before the recording of an abandoned session was done), to finish
   * them from the spool here. One adopter each.
   */
  async adoptUnfinishedRecordings(
    node: string,
    deadAfterMs: number,
    limit: number,
  ): Promise<string[]> {
    const [rows] = await this.db.query<[Array<{ id: string }>, number]>(
      `WITH orphan AS (
         SELECT s.id FROM sessions s JOIN recordings r ON r.session_id = s.id
         WHERE s.status IN ('closed', 'abandoned') AND s.node <> $1
           AND r.status IN ('pending', 'recording', 'finalizing')
           AND NOT EXISTS (SELECT 1 FROM nodes n WHERE n.id = s.node AND ${nodeAliveSql('n', '$2')})
         LIMIT $3
         FOR UPDATE OF s SKIP LOCKED)
       UPDATE sessions s SET node = $1 FROM orphan o WHERE s.id = o.id
       RETURNING s.id`,
      [node, deadAfterMs, limit],
    );
    return rows.map((r) => r.id);
  }
}
