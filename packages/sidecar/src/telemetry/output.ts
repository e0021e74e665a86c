// Where the router's access log lines and spans go: the targets of the config's `telemetry` section, swapped on reload.

import type { Logger } from 'pino';
import type { RouterTelemetry, TelemetrySink } from '@meshport/router';
import type { TelemetryConfig } from '../config';
import { OtlpExporter } from './otlp';
import { RotatingFile } from './rotating-file';
import { StdoutWriter } from './stdout';
import { TraceFile } from './trace-file';
import { lineCount, type LineWriter, type WriterEvents } from './writer';

export type TelemetryKind = 'access' | 'span';

/** Lines delivered to a target and lines lost (queue full, a write or export that failed), by kind, since start. */
export interface TelemetryCounters {
  exported: Record<TelemetryKind, number>;
  dropped: Record<TelemetryKind, number>;
}

/** How long a stop or a reload waits for the lines already handed over to reach their target. */
export const TELEMETRY_FLUSH_MS = 3000;

/** The sampling the router applies: the config without the targets. */
export function routerTelemetryOf(config: TelemetryConfig): RouterTelemetry {
  const { accessLog, tracing } = config;
  return {
    ...(accessLog
      ? { accessLog: { everyN: accessLog.everyN, errors: accessLog.errors, slowMs: accessLog.slowMs } }
      : {}),
    ...(tracing ? { tracing: { everyN: tracing.everyN } } : {}),
  };
}

/** A running target, with the part of the config it was made from (an unchanged one survives a reload). */
interface Target {
  key: string;
  writer: LineWriter;
}

/**
 * The sink the router is given once, at its creation, for good: the targets behind it change with the config. A span
 * batch goes to every tracing target (collector and file), so with both it counts twice in `exported`. Lines that
 * arrive for a kind that is off (formatted just before a reload turned it off) are discarded.
 */
export class TelemetryOutput {
  readonly counters: TelemetryCounters = { exported: { access: 0, span: 0 }, dropped: { access: 0, span: 0 } };
  private access: Target | undefined;
  private spans: Target[] = [];
  /** Whether the last attempt of each target failed: its error is logged once, and its recovery once. */
  private readonly failing = new Set<string>();

  constructor(
    config: TelemetryConfig,
    private readonly node: string,
    private readonly logger: Logger,
  ) {
    this.access = this.accessTarget(config);
    this.spans = this.spanTargets(config);
  }

  readonly sink: TelemetrySink = (kind, lines) => {
    if (kind === 'access') this.access?.writer.write(lines, lineCount(lines));
    else if (this.spans.length > 0) {
      const count = lineCount(lines);
      for (const target of this.spans) target.writer.write(lines, count);
    }
  };

  /**
   * A reload: targets whose settings are unchanged keep running (their file stays open, their queue goes on); the
   * others are closed, after delivering what they hold, and new ones opened. Sampling is the router's (setTelemetry).
   */
  apply(config: TelemetryConfig): Promise<void> {
    // The swap is done when this returns (before the first await); the promise is the old targets' delivery.
    const access = this.accessTarget(config, this.access);
    const spans = this.spanTargets(config, this.spans);
    const gone = [
      ...(this.access && this.access !== access ? [this.access] : []),
      ...this.spans.filter((t) => !spans.includes(t)),
    ];
    this.access = access;
    this.spans = spans;
    return Promise.all(gone.map((t) => t.writer.close(TELEMETRY_FLUSH_MS))).then(() => undefined);
  }

  /** Delivers what is waiting (within `waitMs`) and closes every target. */
  async close(waitMs = TELEMETRY_FLUSH_MS): Promise<void> {
    const all = [...(this.access ? [this.access] : []), ...this.spans];
    this.access = undefined;
    this.spans = [];
    await Promise.all(all.map((t) => t.writer.close(waitMs)));
  }

  private accessTarget(config: TelemetryConfig, running?: Target): Target | undefined {
    const log = config.accessLog;
    if (!log) return undefined;
    const key = log.to === 'stdout' ? 'stdout' : JSON.stringify(['file', log.to, log.maxBytes, log.keep]);
    if (running?.key === key) return running;
    const events = this.events('access', log.to);
    const writer =
      log.to === 'stdout'
        ? new StdoutWriter(process.stdout, events)
        : new RotatingFile({ path: log.to, maxBytes: log.maxBytes, keep: log.keep }, events);
    return { key, writer };
  }

  private spanTargets(config: TelemetryConfig, running: Target[] = []): Target[] {
    const tracing = config.tracing;
    if (!tracing) return [];
    const targets: Target[] = [];
    if (tracing.otlp) {
      const key = JSON.stringify(['otlp', tracing.otlp]);
      const writer = () =>
        new OtlpExporter({ endpoint: tracing.otlp!, node: this.node }, this.events('span', tracing.otlp!));
      targets.push(running.find((t) => t.key === key) ?? { key, writer: writer() });
    }
    if (tracing.file) {
      const key = JSON.stringify(['file', tracing.file]);
      const writer = () => new TraceFile(tracing.file!, this.node, this.events('span', tracing.file!));
      targets.push(running.find((t) => t.key === key) ?? { key, writer: writer() });
    }
    return targets;
  }

  private events(kind: TelemetryKind, target: string): WriterEvents {
    const name = `${kind} ${target}`;
    return {
      written: (count) => {
        this.counters.exported[kind] += count;
        if (this.failing.delete(name)) this.logger.info({ kind, target }, 'telemetry target writing again');
      },
      dropped: (count, error) => {
        this.counters.dropped[kind] += count;
        if (!error || this.failing.has(name)) return;
        this.failing.add(name);
        this.logger.warn(
          { kind, target, error: error.message, dropped: count },
          'telemetry target failed: its lines are dropped (and counted) until it works again',
        );
      },
    };
  }
}
