// Errors and values as a JSON logger can print them.

/**
 * `error` as plain data a logger can serialize. JSON.stringify writes an Error as `{}` (message and stack are not
 * enumerable), throws on a bigint, and writes `{}` for objects whose fields are not enumerable: a log line then says
 * that something failed and nothing of why.
 */
export function loggable(error: unknown, depth = 0): unknown {
  if (typeof error === 'bigint') return error.toString();
  if (error === null || typeof error !== 'object') return error;
  if (depth > 4) return String(error);
  if (Array.isArray(error)) return error.map((item) => loggable(item, depth + 1));
  const out: Record<string, unknown> = {};
  if (error instanceof Error) {
    out.name = error.name;
    out.message = error.message;
  }
  // Own fields, enumerable or not: code, errno, syscall, address, port, a Bolt status, a decoder's offset...
  for (const key of Object.getOwnPropertyNames(error)) {
    if (key === 'stack' || key in out) continue;
    const value = (error as Record<string, unknown>)[key];
    if (typeof value !== 'function') out[key] = loggable(value, depth + 1);
  }
  if (error instanceof Error && error.cause !== undefined) out.cause = loggable(error.cause, depth + 1);
  // Nothing of its own to show (a Map, a class with only getters): its text is still better than `{}`.
  if (Object.keys(out).length === 0) return String(error);
  return out;
}
