// Where the router's access log lines and spans go: the targets of the config's `telemetry` section, swapped on reload.

import type { Logger } from 'pino';
import type { RouterTelemetry, TelemetrySink } from '@meshport/router';
import type { TelemetryConfig } from '../config';
import { OtlpExporter } from './otlp';
import { RotatingFile } from './rotating-file';
import { StdoutWriter } from './stdout';
import { TraceFile } from './trace-file';
import { lineCount, type LineWriter, type Lines, type WriterEvents } from './writer';

export type TelemetryKind = 'access' | 'span';

/** Lines delivered to a target and lines lost (queue full, a write or export that failed), by kind, since start. */
export interface TelemetryCounters {
  exported: Record<TelemetryKind, number>;
  dropped: Record<TelemetryKind, number>;
}

/** How long a stop or a reload waits for the lines already handed over to reach their target. */
export const TELEMETRY_FLUSH_MS = 3000;

/**
 * How long a target a reload removed still takes lines: the engines hand lines over in batches up to 100 ms apart, so
 * the lines of calls made just before the reload arrive after it, and go where they were meant to.
 */
export const LATE_LINES_MS = 300;

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
 * batch goes to every tracing target (collector and file), so with both it counts twice in `exported`. Lines of a
 * kind that a reload turned off still reach its old targets for LATE_LINES_MS (the calls were made while it was on);
 * later ones are discarded.
 */
export class TelemetryOutput {
  readonly counters: TelemetryCounters = { exported: { access: 0, span: 0 }, dropped: { access: 0, span: 0 } };
  private access: Target | undefined;
  private spans: Target[] = [];
  /** Targets a reload turned off, taking late lines of their kind for LATE_LINES_MS before they close. */
  private retiring: { access: Target | undefined; spans: Target[] } = { access: undefined, spans: [] };
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

  /** Takes strings (the TypeScript engine) and, through `bytes`, the native engine's batches as they are. */
  readonly sink: TelemetrySink = Object.assign((kind: TelemetryKind, lines: string) => this.deliver(kind, lines), {
    bytes: (kind: TelemetryKind, lines: Buffer) => this.deliver(kind, lines),
  });

  private deliver(kind: TelemetryKind, lines: Lines): void {
    if (kind === 'access') (this.access ?? this.retiring.access)?.writer.write(lines, lineCount(lines));
    else {
      const targets = this.spans.length > 0 ? this.spans : this.retiring.spans;
      if (targets.length === 0) return;
      const count = lineCount(lines);
      for (const target of targets) target.writer.write(lines, count);
    }
  }

  /**
   * A reload: targets whose settings are unchanged keep running (their file stays open, their queue goes on); the
   * others are closed, after delivering what they hold, and new ones opened. Sampling is the router's (setTelemetry).
   */
  async apply(config: TelemetryConfig): Promise<void> {
    // The swap is done when this returns its promise (before the first await); the promise is the old targets'
    // delivery. A kind turned off keeps its old targets for the late lines; a target replaced by another of its kind
    // leaves those to the new one.
    const access = this.accessTarget(config, this.access);
    const spans = this.spanTargets(config, this.spans);
    const goneAccess = this.access && this.access !== access ? [this.access] : [];
    const goneSpans = this.spans.filter((t) => !spans.includes(t));
    const retiring = { access: access ? undefined : goneAccess[0], spans: spans.length > 0 ? [] : goneSpans };
    this.access = access;
    this.spans = spans;
    if (retiring.access || retiring.spans.length > 0) {
      this.retiring = retiring;
      await new Promise((resolve) => setTimeout(resolve, LATE_LINES_MS));
      if (this.retiring === retiring) this.retiring = { access: undefined, spans: [] };
    }
    await Promise.all([...goneAccess, ...goneSpans].map((t) => t.writer.close(TELEMETRY_FLUSH_MS)));
  }

  /** Delivers what is waiting (within `waitMs`) and closes every target. */
  async close(waitMs = TELEMETRY_FLUSH_MS): Promise<void> {
    const all = [...(this.access ? [this.access] : []), ...this.spans];
    const { access, spans } = this.retiring;
    for (const target of [...(access ? [access] : []), ...spans]) if (!all.includes(target)) all.push(target);
    this.access = undefined;
    this.spans = [];
    this.retiring = { access: undefined, spans: [] };
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
