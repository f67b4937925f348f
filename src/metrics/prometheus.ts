/**
 * The few Prometheus types the node exposes, written to the text format (version 0.0.4) by hand:
 * a counter with labels and a histogram. Nothing here is called per frame; a histogram takes one
 * observation per merged ack.
 */

/** A label value escaped as the text format asks (backslash, double quote, newline). */
function escapeLabel(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function labelSet(names: readonly string[], values: readonly string[]): string {
  return names.map((n, i) => `${n}="${escapeLabel(values[i] ?? '')}"`).join(',');
}

/** A counter per combination of label values, e.g. handshakes by transport and outcome. */
export class LabeledCounter {
  private readonly values = new Map<string, { labels: string[]; value: number }>();

  constructor(
    readonly name: string,
    private readonly help: string,
    private readonly labelNames: readonly string[],
  ) {}

  inc(labels: readonly string[], by = 1): void {
    const key = labels.join('\u0000');
    const entry = this.values.get(key);
    if (entry) {
      entry.value += by;
    } else {
      this.values.set(key, { labels: [...labels], value: by });
    }
  }

  /** The count for one combination (0 when never counted). */
  get(labels: readonly string[]): number {
    return this.values.get(labels.join('\u0000'))?.value ?? 0;
  }

  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} counter`];
    for (const { labels, value } of this.values.values()) {
      lines.push(`${this.name}{${labelSet(this.labelNames, labels)}} ${value}`);
    }
    return lines.join('\n');
  }
}

/** A cumulative histogram with fixed upper bounds (seconds for latencies). */
export class Histogram {
  private readonly counts: Float64Array;
  private sum = 0;
  private count = 0;

  constructor(
    readonly name: string,
    private readonly help: string,
    private readonly bounds: readonly number[],
  ) {
    this.counts = new Float64Array(bounds.length);
  }

  observe(value: number): void {
    this.sum += value;
    this.count++;
    for (let i = 0; i < this.bounds.length; i++) {
      if (value <= this.bounds[i]) {
        this.counts[i]++;
        return;
      }
    }
  }

  get observations(): number {
    return this.count;
  }

  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`];
    let cumulative = 0;
    for (let i = 0; i < this.bounds.length; i++) {
      cumulative += this.counts[i];
      lines.push(`${this.name}_bucket{le="${this.bounds[i]}"} ${cumulative}`);
    }
    lines.push(`${this.name}_bucket{le="+Inf"} ${this.count}`);
    lines.push(`${this.name}_sum ${this.sum}`);
    lines.push(`${this.name}_count ${this.count}`);
    return lines.join('\n');
  }
}

/** One unlabelled gauge or counter. */
export function single(
  name: string,
  type: 'gauge' | 'counter',
  help: string,
  value: number,
): string {
  return `# HELP ${name} ${help}\n# TYPE ${name} ${type}\n${name} ${value}`;
}
