// The table of suites `main` knows. A new suite (forward, registry, ...) is one module exporting a Suite and one line here.

import type { Suite } from '../suite';
import { decodeSuite } from './decode';
import { forwardSuite } from './forward';
import { hijackSuite } from './hijack';
import { memorySuite } from './memory';
import { registrySuite } from './registry';

export const SUITES: ReadonlyMap<string, Suite> = new Map(
  [decodeSuite, forwardSuite, registrySuite, memorySuite, hijackSuite].map((s) => [s.name, s]),
);
