// One way to make a router: the native engine where it can run, the TypeScript one where it cannot (and why).

import pino from 'pino';
import type { EngineName, RouterHandle } from './handle';
import { NativeRouter, nativeRouterUnavailable } from './native-router';
import { Router } from './router';
import type { RouterOptions } from './router-setup';

/** Selects the engine when the options do not: `MESHPORT_ENGINE=native|js`; unset, the native engine. */
export const ENGINE_ENV = 'MESHPORT_ENGINE';

export function defaultEngine(): EngineName {
  const wanted = process.env[ENGINE_ENV];
  return wanted === 'js' ? 'js' : 'native';
}

/**
 * A router on the engine `options.engine` names (default: defaultEngine()). When the native engine is asked for and
 * cannot run (the addon is not built or does not load, or the options need something only the TypeScript engine
 * does), the reason is logged as a warning and the TypeScript engine runs instead: a sidecar never fails to start
 * for want of its fast path.
 */
export function createRouter(options: RouterOptions): RouterHandle {
  const wanted = options.engine ?? defaultEngine();
  if (wanted === 'native') {
    const reason = nativeRouterUnavailable(options);
    if (reason === undefined) return new NativeRouter(options);
    const logger = options.logger ?? pino({ name: 'meshport-router' });
    logger.warn({ reason }, 'the native engine cannot run here; running the TypeScript engine');
  }
  return new Router(options);
}
