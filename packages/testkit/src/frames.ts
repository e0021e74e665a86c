// Request frames made by hand, as an app's SDK writes them (see PROTOCOLS.md), for suites that speak the wire
// directly: a Bolt v1 request naming its service, and a Dubbo call with its attachments (where the group travels).
// Each carries a body that names it, so an answer that reaches the wrong caller is caught.

/** The request class sofa-rpc writes in every Bolt request. */
export const BOLT_SOFA_REQUEST = 'com.alipay.sofa.rpc.core.request.SofaRequest';

/** A Bolt v1 request: class, a header map with `service`, and the content (bytes, or a string's UTF-8) as given. */
export function boltRequest(id: number, service: string, content: Buffer | string, timeoutMs = 3000): Buffer {
  return boltRequestWith(id, { service }, content, timeoutMs);
}

/**
 * A Bolt v1 request whose header map is `headers` in their order (a Java SOFA client's request: `service`,
 * `sofa_head_method_name`, `rpc_trace_context.sofaTraceId`...), with the content as given.
 */
export function boltRequestWith(
  id: number,
  headers: Record<string, string>,
  content: Buffer | string,
  timeoutMs = 3000,
): Buffer {
  const cls = Buffer.from(BOLT_SOFA_REQUEST);
  const header = Buffer.concat(
    Object.entries(headers).flatMap(([k, v]) => {
      const key = Buffer.from(k);
      const val = Buffer.from(v);
      const lengths = Buffer.alloc(4);
      lengths.writeInt32BE(key.length, 0);
      const valLength = Buffer.alloc(4);
      valLength.writeInt32BE(val.length, 0);
      return [lengths, key, valLength, val];
    }),
  );
  const body = typeof content === 'string' ? Buffer.from(content) : content;
  const fixed = Buffer.alloc(22);
  fixed[0] = 1; // Bolt v1
  fixed[1] = 1; // request
  fixed.writeUInt16BE(1, 2); // cmdcode: RPC request
  fixed[4] = 1;
  fixed.writeInt32BE(id, 5);
  fixed[9] = 1; // hessian2
  fixed.writeInt32BE(timeoutMs, 10);
  fixed.writeInt16BE(cls.length, 14);
  fixed.writeInt16BE(header.length, 16);
  fixed.writeInt32BE(body.length, 18);
  return Buffer.concat([fixed, cls, header, body]);
}

/** A Dubbo two-way hessian2 request with the payload as given (it must start with the version/service/version/method strings). */
export function dubboRequest(id: bigint | number, payload: Buffer): Buffer {
  const head = Buffer.alloc(16);
  head.writeUInt16BE(0xdabb, 0);
  head[2] = 0xc2; // request, two-way, hessian2
  head.writeBigInt64BE(BigInt(id), 4);
  head.writeInt32BE(payload.length, 12);
  return Buffer.concat([head, payload]);
}

/**
 * A Dubbo call as Dubbo writes one: the leading strings, the descriptor, one String argument `arg`, then the
 * attachments map (path, version, and `group` when given), where the router reads the call's group.
 */
export function dubboCall(
  id: bigint | number,
  iface: string,
  version: string,
  method: string,
  arg: string,
  group?: string,
): Buffer {
  const attachments = [hessianShort('path'), hessianShort(iface), hessianShort('version'), hessianShort(version)];
  if (group !== undefined) attachments.push(hessianShort('group'), hessianShort(group));
  return dubboRequest(
    id,
    Buffer.concat([
      hessianShort('2.0.2'),
      hessianShort(iface),
      hessianShort(version),
      hessianShort(method),
      hessianShort('Ljava/lang/String;'),
      hessianShort(arg),
      Buffer.from('H'),
      ...attachments,
      Buffer.from('Z'),
    ]),
  );
}

/** Hessian2 compact strings (short ones, ASCII): enough for the leading strings of a Dubbo body. */
export function hessianShort(s: string): Buffer {
  const b = Buffer.from(s);
  if (b.length >= 32) return Buffer.concat([Buffer.from([0x30 + (b.length >> 8), b.length & 0xff]), b]);
  return Buffer.concat([Buffer.from([b.length]), b]);
}
