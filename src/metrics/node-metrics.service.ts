import { Injectable, type OnModuleDestroy } from '@nestjs/common';
import { type IntervalHistogram, monitorEventLoopDelay } from 'node:perf_hooks';
import { Histogram, LabeledCounter, single } from './prometheus';

/**
 * Ack latency bounds, in seconds: merged acks wait up to ACK_INTERVAL_MS (200 ms by default) plus
 * a group fdatasync, so the interesting range is 5 ms to a few seconds.
 */
const ACK_LATENCY_BOUNDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.25, 0.5, 1, 2.5, 5, 10];

/**
 * The node's event counters for /metrics, filled where the events happen: the audit writer counts
 * handshakes and closes (every one is audited, so the two cannot disagree), sessions observe each
 * merged ack's latency, admin routes count their actions, webhook deliveries their attempts.
 * Event-loop lag comes from Node's own sampler (20 ms resolution), reported over the interval
 * since the previous scrape.
 */
@Injectable()
export class NodeMetrics implements OnModuleDestroy {
  readonly handshakes = new LabeledCounter(
    'framegate_handshakes_total',
    'Handshakes (WebSocket upgrades and fallback session opens) by transport and audited outcome',
    ['transport', 'outcome'],
  );
  readonly closes = new LabeledCounter(
    'framegate_connection_closes_total',
    'Accepted connections that ended, by transport and close reason',
    ['transport', 'reason'],
  );
  readonly adminActions = new LabeledCounter(
    'framegate_admin_actions_total',
    'Actions taken through the admin API, by action',
    ['action'],
  );
  /** Every webhook delivery attempt this node made, by outcome (webhook_attempts.outcome). */
  readonly webhookAttempts = new LabeledCounter(
    'framegate_webhook_attempts_total',
    'Webhook delivery attempts made by this node, by outcome',
    ['outcome'],
  );
  /**
   * From the arrival of the first frame a merged ack covers to the ack's sending (after the group
   * fdatasync): what the oldest frame of each ack waited.
   */
  readonly ackLatency = new Histogram(
    'framegate_ack_latency_seconds',
    'Time from the first frame an ack covers arriving to the ack being sent',
    ACK_LATENCY_BOUNDS,
  );
  /**
   * One group write + fdatasync of a session's spool: with the event-loop lag, it tells whether
   * slow acks wait for the disk or for the CPU.
   */
  readonly spoolSync = new Histogram(
    'framegate_spool_sync_seconds',
    'Duration of one group write and fdatasync of a session spool',
    ACK_LATENCY_BOUNDS,
  );
  private readonly loop: IntervalHistogram = monitorEventLoopDelay({ resolution: 20 });

  constructor() {
    this.loop.enable();
  }

  onModuleDestroy(): void {
    this.loop.disable();
  }

  /** The counters, histogram and event-loop gauges as Prometheus text (no trailing newline). */
  render(): string {
    // Nanoseconds to seconds; the sampler's own resolution is subtracted by Node already.
    const lag = (ns: number): number => (Number.isFinite(ns) ? ns / 1e9 : 0);
    const sampled = this.loop.count > 0;
    const text = [
      this.handshakes.render(),
      this.closes.render(),
      this.adminActions.render(),
      this.webhookAttempts.render(),
      this.ackLatency.render(),
      this.spoolSync.render(),
      single(
        'framegate_event_loop_lag_p99_seconds',
        'gauge',
        'Event-loop delay, 99th percentile since the previous scrape',
        sampled ? lag(this.loop.percentile(99)) : 0,
      ),
      single(
        'framegate_event_loop_lag_max_seconds',
        'gauge',
        'Event-loop delay, longest since the previous scrape',
        sampled ? lag(this.loop.max) : 0,
      ),
    ].join('\n');
    this.loop.reset();
    return text;
  }
}
