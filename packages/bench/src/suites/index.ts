// The table of suites `main` knows. A new suite (forward, ...) is one module exporting a Suite and one line here.

import type { Suite } from '../suite';
import { decodeSuite } from './decode';
import { forwardSuite } from './forward';

export const SUITES: ReadonlyMap<string, Suite> = new Map([decodeSuite, forwardSuite].map((s) => [s.name, s]));
