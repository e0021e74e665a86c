// The sidecar's log as the CLI writes it: pino's JSON lines for machines, or one readable line per entry for people.

import pino, { type Logger } from 'pino';
import { Style, colourWanted } from './format';

const LEVEL_NAMES: Record<number, string> = {
  10: 'TRACE',
  20: 'DEBUG',
  30: 'INFO',
  40: 'WARN',
  50: 'ERROR',
  60: 'FATAL',
};
/** Fields every line has, shown in the line's own layout (or, for pid and hostname, not at all). */
const LAID_OUT = new Set(['level', 'time', 'msg', 'part', 'name', 'pid', 'hostname']);

/**
 * `auto`: readable when stdout is a terminal, JSON otherwise (a log collector, a pipe, the demo and the tests read
 * JSON). Both carry the same fields.
 */
export function sidecarLogger(
  level: string,
  format: 'auto' | 'json' | 'pretty',
  stdout: NodeJS.WriteStream = process.stdout,
): Logger {
  const pretty = format === 'pretty' || (format === 'auto' && stdout.isTTY === true);
  if (!pretty) return pino({ name: 'meshport', level });
  const style = new Style(colourWanted(stdout, undefined));
  return pino({ name: 'meshport', level }, { write: (line: string) => void stdout.write(prettyLine(line, style)) });
}

/** `12:03:04.567 WARN  [registry] registry cannot connect registry=zk error="..."` from one pino JSON line. */
export function prettyLine(json: string, style: Style): string {
  let entry: Record<string, unknown>;
  try {
    entry = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return json;
  }
  const time = typeof entry.time === 'number' ? new Date(entry.time).toISOString().slice(11, 23) : '';
  const level = LEVEL_NAMES[entry.level as number] ?? String(entry.level);
  const paint =
    (entry.level as number) >= 50
      ? style.red
      : (entry.level as number) >= 40
        ? style.yellow
        : (entry.level as number) >= 30
          ? style.green
          : style.dim;
  const part = typeof entry.part === 'string' ? `${style.dim(`[${entry.part}]`)} ` : '';
  const fields = Object.entries(entry)
    .filter(([key]) => !LAID_OUT.has(key))
    .map(
      ([key, value]) =>
        `${style.cyan(key)}=${typeof value === 'string' && /^[^\s"=]+$/.test(value) ? value : JSON.stringify(value)}`,
    );
  return `${style.dim(time)} ${paint(level.padEnd(5))} ${part}${String(entry.msg ?? '')}${fields.length > 0 ? ' ' + fields.join(' ') : ''}\n`;
}
