// Loaded before every suite (.mocharc.json, scripts/test-engines.sh): the tests never ask a DNS server. A name under
// `.invalid` never resolves (RFC 6761, which asks resolver libraries to answer such names at once); the suites use
// such names to exercise "does not resolve", and this answers them ENOTFOUND here instead of the machine's resolver
// being queried: no test traffic leaves loopback, not even a DNS query.

import dns from 'node:dns';

const invalid = (host: unknown): boolean => typeof host === 'string' && /(^|\.)invalid\.?$/i.test(host);

function notFound(host: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), {
    code: 'ENOTFOUND',
    errno: -3008,
    syscall: 'getaddrinfo',
    hostname: host,
  });
}

const lookup = dns.lookup;
dns.lookup = function guardedLookup(host: string, options: unknown, callback?: unknown) {
  const cb = (typeof options === 'function' ? options : callback) as (err: NodeJS.ErrnoException | null) => void;
  if (invalid(host)) {
    process.nextTick(() => cb(notFound(host)));
    return {} as never;
  }
  return (lookup as (...args: unknown[]) => unknown).call(dns, host, options, callback);
} as typeof dns.lookup;

const lookupPromise = dns.promises.lookup;
dns.promises.lookup = function guardedLookupPromise(host: string, options?: unknown) {
  if (invalid(host)) return Promise.reject(notFound(host));
  return (lookupPromise as (...args: unknown[]) => Promise<unknown>).call(dns.promises, host, options);
} as typeof dns.promises.lookup;
