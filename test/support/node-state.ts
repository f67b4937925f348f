import { readdirSync, readlinkSync } from 'node:fs';
import { resolve } from 'node:path';
import { QuotaService } from '../../src/stream/quota.service';
import { SessionRegistry } from '../../src/stream/session-registry.service';
import type { TestApp } from './app';

/** The gauges and counters of /metrics, by name. */
export async function metrics(base: string): Promise<Record<string, number>> {
  const res = await fetch(`${base}/metrics`);
  const text = await res.text();
  const values: Record<string, number> = {};
  for (const line of text.split('\n')) {
    const match = /^(framegate_[a-z_]+) (\S+)$/.exec(line);
    if (match) {
      values[match[1]] = Number(match[2]);
    }
  }
  return values;
}

/** What the node says of itself and what is really there, side by side. */
export interface NodeState {
  /** /metrics `framegate_sessions_live`. */
  sessionsLiveMetric: number;
  /** /metrics `framegate_connections`. */
  connectionsMetric: number;
  /** /metrics `framegate_connection_slots`. */
  slotsMetric: number;
  /** The session registry's runtimes, with their status. */
  runtimes: Array<{ id: string; status: string; attached: boolean }>;
  /** The quota service's own counters. */
  quota: { node: number; channels: Record<string, number> };
  /** Rows of this node's sessions that are open or interrupted. */
  liveRows: number;
  /** Open fds of the process (the app runs in the test process). */
  fds: number;
  /** Open fds on a spool file of this app. */
  spoolFds: number;
}

/** Open fds of this process that point into `dir`. */
export function fdsUnder(dir: string): number {
  let n = 0;
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`).startsWith(dir)) {
        n++;
      }
    } catch {
      // Closed between the listing and the readlink (e.g. the listing's own fd).
    }
  }
  return n;
}

export async function nodeState(app: TestApp): Promise<NodeState> {
  const m = await metrics(app.url);
  const registry = app.started.app.get(SessionRegistry);
  const quotas = app.started.app.get(QuotaService);
  const rows = await app.db.query<{ n: string }>(
    `SELECT count(*) AS n FROM sessions WHERE node = $1 AND status IN ('open', 'interrupted')`,
    [app.started.config.NODE_ID],
  );
  return {
    sessionsLiveMetric: m.framegate_sessions_live,
    connectionsMetric: m.framegate_connections,
    slotsMetric: m.framegate_connection_slots,
    runtimes: [...registry.runtimes()].map((r) => ({
      id: r.id,
      status: r.status,
      attached: r.attached !== null,
    })),
    quota: quotas.stats(),
    liveRows: Number(rows.rows[0].n),
    fds: readdirSync('/proc/self/fd').length,
    spoolFds: fdsUnder(`${resolve(app.dataDir, 'spool')}/`),
  };
}
