// docs/errors.md and every package's error table stay in step: one section per package that has a table, same codes,
// same meanings; and every error class a package exports is a MeshportError, so callers can match on `code`.

import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { MeshportError } from '@meshport/protocol';

const root = path.resolve(__dirname, '../..');
const doc = readFileSync(path.join(root, 'docs/errors.md'), 'utf8');

/** A row whose meaning starts with this keeps a code that is no longer raised documented (codes are never reused). */
const RETIRED = '(retired)';

interface Row {
  meaning: string;
  retired: boolean;
}

/** The rows of one package's section (`## @meshport/NAME` up to the next `## `), or undefined when it has none. */
function section(pkg: string): Map<string, Row> | undefined {
  const start = doc.indexOf(`\n## ${pkg}\n`);
  if (start < 0) return undefined;
  const end = doc.indexOf('\n## ', start + 1);
  const rows = new Map<string, Row>();
  for (const m of doc
    .slice(start, end < 0 ? undefined : end)
    .matchAll(/^\| `([A-Za-z][A-Za-z0-9_]*)` \| (.+?) \|$/gm)) {
    rows.set(m[1], { meaning: m[2], retired: m[2].startsWith(RETIRED) });
  }
  return rows;
}

/** Every `## @meshport/...` heading of the document. */
const documentedPackages = [...doc.matchAll(/^## (@meshport\/[a-z0-9-]+)$/gm)].map((m) => m[1]);

interface Workspace {
  name: string;
  exports: Record<string, unknown>;
  /** Its `*_ERROR_CODES` export, when it has one. */
  table?: Record<string, string>;
}

/** The test kit's errors belong to the test harness (a port another suite took), never to meshport: no user meets them. */
const TEST_SUPPORT: ReadonlySet<string> = new Set(['@meshport/testkit']);

/**
 * Every workspace of the root package.json but the test kit, loaded by name as a caller would load it. Found rather
 * than listed, so a package that gains an error table is covered without anyone remembering to add it here.
 */
function workspaces(): Workspace[] {
  const { workspaces: dirs } = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as {
    workspaces: string[];
  };
  const names = dirs.map(
    (dir) => (JSON.parse(readFileSync(path.join(root, dir, 'package.json'), 'utf8')) as { name: string }).name,
  );
  return names
    .filter((name) => !TEST_SUPPORT.has(name))
    .map((name) => {
      const exports = require(name) as Record<string, unknown>;
      const tables = Object.keys(exports).filter((key) => key.endsWith('_ERROR_CODES'));
      assert.ok(tables.length <= 1, `${name} exports one error table, not ${tables.join(', ')}`);
      return { name, exports, table: tables.length === 1 ? (exports[tables[0]] as Record<string, string>) : undefined };
    });
}

const packages = workspaces();
const withTables = packages.filter((p): p is Workspace & { table: Record<string, string> } => p.table !== undefined);

/** A function whose prototype chain reaches Error.prototype: an error class. */
function isErrorClass(value: unknown): value is new (...args: never[]) => Error {
  return typeof value === 'function' && (value === Error || value.prototype instanceof Error);
}

describe('docs/errors.md', () => {
  it('finds the error table of every package known to have one', () => {
    // If discovery broke (a renamed export, a package no longer loadable), the checks below would pass vacuously.
    const found = withTables.map((p) => p.name);
    for (const name of [
      '@meshport/protocol',
      '@meshport/registry-core',
      '@meshport/sidecar',
      '@meshport/socket',
      '@meshport/hijack',
      '@meshport/cli',
      '@meshport/bench',
    ]) {
      assert.ok(found.includes(name), `${name} exports no *_ERROR_CODES table (found: ${found.join(', ')})`);
    }
  });

  for (const { name, table } of withTables) {
    it(`documents every code of ${name} with its meaning, and no code the package lacks unless retired`, () => {
      const rows = section(name);
      assert.ok(rows, `docs/errors.md has no section ## ${name}`);
      for (const [code, meaning] of Object.entries(table)) {
        assert.deepEqual(rows.get(code), { meaning, retired: false }, `row for ${code}`);
      }
      for (const [code, row] of rows) {
        if (row.retired)
          assert.ok(!(code in table), `${name} still defines ${code}, which docs/errors.md says is retired`);
        else
          assert.ok(
            code in table,
            `${name} section documents ${code}, which the code does not define (mark it ${RETIRED} if it was)`,
          );
      }
    });
  }

  it('has one section per package, and only for packages that have an error table', () => {
    const names = withTables.map((p) => p.name);
    assert.deepEqual(
      documentedPackages.filter((pkg, i) => documentedPackages.indexOf(pkg) !== i),
      [],
    );
    for (const pkg of documentedPackages)
      assert.ok(names.includes(pkg), `docs/errors.md has a section ## ${pkg}, which exports no error table`);
  });

  it('never uses one code in two packages, nor a retired code again', () => {
    const all = withTables.flatMap((p) => Object.keys(p.table));
    assert.deepEqual(
      all.filter((code, i) => all.indexOf(code) !== i),
      [],
    );
    const retired = documentedPackages.flatMap((pkg) =>
      [...(section(pkg) ?? new Map<string, Row>())].filter(([, row]) => row.retired).map(([code]) => code),
    );
    assert.deepEqual(
      all.filter((code) => retired.includes(code)),
      [],
    );
  });
});

describe('error classes', () => {
  it('every error class a package exports is a MeshportError', () => {
    let checked = 0;
    for (const { name, exports } of packages) {
      for (const [key, value] of Object.entries(exports)) {
        if (!isErrorClass(value)) continue;
        assert.ok(
          value === MeshportError || value.prototype instanceof MeshportError,
          `${name} exports ${key}, an Error that is not a MeshportError`,
        );
        checked++;
      }
    }
    assert.ok(checked > 0, 'no package exports an error class: the walk found nothing to check');
  });
});
