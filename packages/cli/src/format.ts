// How a decoded frame is shown: one JSON object per frame, or a coloured one-screen view for people.

import { BoltStatus, DubboStatus, type FrameHeader } from '@meshport/protocol';

const boltStatusNames = invert(BoltStatus);
const dubboStatusNames = invert(DubboStatus);

function invert(table: Record<string, number>): Record<number, string> {
  return Object.fromEntries(Object.entries(table).map(([name, code]) => [code, name]));
}

export function statusName(header: FrameHeader): string | undefined {
  if (header.status === undefined) return undefined;
  const names = header.protocol === 'bolt' ? boltStatusNames : dubboStatusNames;
  return names[header.status] ?? 'UNKNOWN_STATUS';
}

/** The JSON view: the field names of the protocol package, only those present, plus where the frame starts. */
export function frameJson(header: FrameHeader, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const out: Record<string, unknown> = {
    protocol: header.protocol,
    protocolVersion: header.protocol === 'bolt' ? header.protocolVersion : undefined,
    kind: header.kind,
    requestId: header.requestId,
    service: header.service,
    method: header.method,
    version: header.protocol === 'dubbo' ? header.version : undefined,
    dubboVersion: header.protocol === 'dubbo' ? header.dubboVersion : undefined,
    serialization: header.serialization,
    timeoutMs: header.protocol === 'bolt' ? header.timeoutMs : undefined,
    status: header.status,
    statusName: statusName(header),
    className: header.protocol === 'bolt' ? header.className : undefined,
    headers: header.protocol === 'bolt' ? header.headers : undefined,
    frameLength: header.frameLength,
    bodyLength: header.bodyLength,
    crc: header.protocol === 'bolt' ? header.crc : undefined,
    ...extra,
  };
  for (const key of Object.keys(out)) if (out[key] === undefined) delete out[key];
  return out;
}

/** ANSI styling, switched off for pipes, NO_COLOR and --no-color. */
export class Style {
  constructor(readonly enabled: boolean) {}
  private wrap(code: string, text: string): string {
    return this.enabled ? `\x1b[${code}m${text}\x1b[0m` : text;
  }
  bold = (t: string) => this.wrap('1', t);
  dim = (t: string) => this.wrap('2', t);
  red = (t: string) => this.wrap('31', t);
  green = (t: string) => this.wrap('32', t);
  yellow = (t: string) => this.wrap('33', t);
  blue = (t: string) => this.wrap('34', t);
  magenta = (t: string) => this.wrap('35', t);
  cyan = (t: string) => this.wrap('36', t);
}

export function colourWanted(stream: NodeJS.WriteStream, flag: boolean | undefined): boolean {
  if (flag !== undefined) return flag;
  if (process.env.NO_COLOR !== undefined && process.env.NO_COLOR !== '') return false;
  if (process.env.FORCE_COLOR !== undefined && process.env.FORCE_COLOR !== '0') return true;
  return stream.isTTY === true;
}

/** One headline and, indented, the details a debugging person reads next. */
export function framePretty(header: FrameHeader, s: Style, prefix = ''): string {
  const proto = header.protocol === 'bolt' ? `bolt v${header.protocolVersion}` : 'dubbo';
  const kindColour = header.kind === 'response' || header.kind === 'heartbeat-ack' ? s.green : s.cyan;
  const parts = [s.bold(proto), kindColour(header.kind), `id=${header.requestId}`];
  if (header.service !== undefined) {
    const version = header.protocol === 'dubbo' && header.version ? `:${header.version}` : '';
    parts.push(s.magenta(header.service + version) + (header.method ? `#${s.bold(header.method)}` : ''));
  }
  if (header.status !== undefined) {
    const name = statusName(header) ?? String(header.status);
    const ok = header.status === (header.protocol === 'bolt' ? BoltStatus.SUCCESS : DubboStatus.OK);
    parts.push((ok ? s.green : s.red)(`${name}(${header.status})`));
  }
  const lines = [prefix + parts.join(' ')];
  const details = [
    `serialization=${header.serialization}`,
    header.protocol === 'bolt' && header.timeoutMs !== undefined ? `timeout=${header.timeoutMs}ms` : '',
    `frame=${header.frameLength}B body=${header.bodyLength}B`,
    header.protocol === 'bolt' && header.crc ? `crc=${header.crc === 'ok' ? s.green('ok') : s.red('bad')}` : '',
    header.protocol === 'dubbo' && header.dubboVersion ? `dubbo=${header.dubboVersion}` : '',
  ].filter(Boolean);
  const pad = ' '.repeat(prefix.length + 2);
  lines.push(pad + s.dim(details.join('  ')));
  if (header.protocol === 'bolt') {
    if (header.className) lines.push(pad + s.dim('class ') + header.className);
    const entries = Object.entries(header.headers);
    if (entries.length > 0) {
      lines.push(pad + s.dim('headers ') + entries.map(([k, v]) => `${s.yellow(k)}=${v ?? 'null'}`).join(' '));
    }
  }
  return lines.join('\n');
}

/** Body values (from --body) as indented JSON under the frame. */
export function bodyPretty(values: unknown[], s: Style, indent: string): string {
  return values
    .map((v, i) => `${indent}${s.dim(`body[${i}]`)} ${JSON.stringify(v, null, 2).replace(/\n/g, `\n${indent}  `)}`)
    .join('\n');
}
