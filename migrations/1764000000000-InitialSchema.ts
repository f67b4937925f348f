import type { MigrationInterface, QueryRunner } from 'typeorm';

export class InitialSchema1764000000000 implements MigrationInterface {
  name = 'InitialSchema1764000000000';

  public async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE sessions (
        id uuid PRIMARY KEY,
        subject text NOT NULL,
        channel text NOT NULL,
        status text NOT NULL
          CONSTRAINT ck_sessions_status CHECK (status IN ('open', 'interrupted', 'abandoned', 'closed')),
        status_history jsonb NOT NULL DEFAULT '[]',
        params jsonb NOT NULL DEFAULT '{}',
        video jsonb NOT NULL,
        audio jsonb,
        recording_settings jsonb,
        resume_token_hash text NOT NULL,
        node text NOT NULL,
        last_seq bigint NOT NULL DEFAULT 0,
        video_frames bigint NOT NULL DEFAULT 0,
        audio_frames bigint NOT NULL DEFAULT 0,
        rejected_frames bigint NOT NULL DEFAULT 0,
        bytes_in bigint NOT NULL DEFAULT 0,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        interrupted_at timestamptz,
        closed_at timestamptz
      )`);
    await q.query(
      `CREATE INDEX ix_sessions_channel_created ON sessions (channel, created_at DESC)`,
    );
    await q.query(
      `CREATE INDEX ix_sessions_subject_created ON sessions (subject, created_at DESC)`,
    );
    await q.query(`CREATE INDEX ix_sessions_status_updated ON sessions (status, updated_at)`);
    await q.query(`CREATE INDEX ix_sessions_params ON sessions USING gin (params jsonb_path_ops)`);

    await q.query(`
      CREATE TABLE session_messages (
        id uuid PRIMARY KEY,
        session_id uuid NOT NULL
          CONSTRAINT fk_session_messages_session REFERENCES sessions (id) ON DELETE CASCADE,
        direction text NOT NULL CONSTRAINT ck_session_messages_direction CHECK (direction IN ('in', 'out')),
        client_id text NOT NULL,
        body jsonb NOT NULL,
        sender text,
        created_at timestamptz NOT NULL DEFAULT now()
      )`);
    await q.query(
      `CREATE INDEX ix_session_messages_session_created ON session_messages (session_id, created_at)`,
    );
    await q.query(
      `CREATE UNIQUE INDEX ux_session_messages_client_id ON session_messages (session_id, direction, client_id)`,
    );

    await q.query(`
      CREATE TABLE session_events (
        id uuid PRIMARY KEY,
        session_id uuid NOT NULL
          CONSTRAINT fk_session_events_session REFERENCES sessions (id) ON DELETE CASCADE,
        at timestamptz NOT NULL,
        type text NOT NULL,
        connection_id uuid,
        detail jsonb NOT NULL DEFAULT '{}'
      )`);
    await q.query(`CREATE INDEX ix_session_events_session_at ON session_events (session_id, at)`);

    // No foreign key to sessions: a rejected handshake has no session, and audits outlive purges.
    await q.query(`
      CREATE TABLE connection_audits (
        id uuid PRIMARY KEY,
        at timestamptz NOT NULL,
        node text NOT NULL,
        transport text NOT NULL CONSTRAINT ck_connection_audits_transport CHECK (transport IN ('ws', 'http')),
        remote_address text,
        user_agent text,
        origin text,
        subject text,
        channel text,
        outcome text NOT NULL,
        error text,
        session_id uuid,
        closed_at timestamptz,
        close_code integer,
        close_reason text,
        duration_ms bigint,
        bytes_in bigint,
        bytes_out bigint,
        frames_in bigint,
        frames_out bigint
      )`);
    await q.query(`CREATE INDEX ix_connection_audits_at ON connection_audits (at DESC)`);
    await q.query(
      `CREATE INDEX ix_connection_audits_channel_at ON connection_audits (channel, at DESC)`,
    );
    await q.query(
      `CREATE INDEX ix_connection_audits_subject_at ON connection_audits (subject, at DESC)`,
    );
    await q.query(`CREATE INDEX ix_connection_audits_session ON connection_audits (session_id)`);
    await q.query(
      `CREATE INDEX ix_connection_audits_outcome_at ON connection_audits (outcome, at DESC)`,
    );

    await q.query(`
      CREATE TABLE recordings (
        id uuid PRIMARY KEY,
        session_id uuid NOT NULL
          CONSTRAINT fk_recordings_session REFERENCES sessions (id) ON DELETE CASCADE,
        status text NOT NULL CONSTRAINT ck_recordings_status
          CHECK (status IN ('pending', 'recording', 'finalizing', 'ready', 'failed')),
        failure_reason text,
        path text,
        bytes bigint,
        duration_ms bigint,
        frame_count integer,
        width integer,
        height integer,
        video_codec text,
        audio_codec text,
        sha256 text,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        ready_at timestamptz
      )`);
    await q.query(`CREATE UNIQUE INDEX ux_recordings_session ON recordings (session_id)`);
    await q.query(`CREATE INDEX ix_recordings_status_updated ON recordings (status, updated_at)`);

    await q.query(`
      CREATE TABLE tickets (
        id uuid PRIMARY KEY,
        token_hash text NOT NULL,
        subject text NOT NULL,
        channel text NOT NULL,
        scopes text[] NOT NULL,
        expires_at timestamptz NOT NULL,
        token_expires_at timestamptz NOT NULL,
        consumed_at timestamptz,
        created_at timestamptz NOT NULL DEFAULT now()
      )`);
    await q.query(`CREATE UNIQUE INDEX ux_tickets_hash ON tickets (token_hash)`);
    await q.query(`CREATE INDEX ix_tickets_expires ON tickets (expires_at)`);

    await q.query(`
      CREATE TABLE channel_quotas (
        channel text PRIMARY KEY,
        max_connections integer CONSTRAINT ck_channel_quotas_max_connections CHECK (max_connections >= 0),
        handshakes_per_min integer CONSTRAINT ck_channel_quotas_handshakes CHECK (handshakes_per_min >= 0),
        max_fps integer CONSTRAINT ck_channel_quotas_max_fps CHECK (max_fps > 0),
        max_kbps integer CONSTRAINT ck_channel_quotas_max_kbps CHECK (max_kbps > 0),
        updated_at timestamptz NOT NULL DEFAULT now()
      )`);
  }

  public async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE channel_quotas`);
    await q.query(`DROP TABLE tickets`);
    await q.query(`DROP TABLE recordings`);
    await q.query(`DROP TABLE connection_audits`);
    await q.query(`DROP TABLE session_events`);
    await q.query(`DROP TABLE session_messages`);
    await q.query(`DROP TABLE sessions`);
  }
}
