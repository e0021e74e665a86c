// Each workspace package has a README a newcomer can start from (what it is, its API, an example), and the API table
// names only what the package really exports: a renamed or removed export fails here instead of misleading a reader.

import { strict as assert } from 'node:assert';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';

const ROOT = path.resolve(__dirname, '../..');

function workspaces(): string[] {
  const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { workspaces: string[] };
  return pkg.workspaces;
}

/** Every name a package's compiled declarations export (values and types), from dist/src/**\/*.d.ts. */
function exportedNames(dir: string): Set<string> {
  const names = new Set<string>();
  const walk = (d: string): void => {
    for (const entry of readdirSync(d)) {
      const p = path.join(d, entry);
      if (statSync(p).isDirectory()) walk(p);
      else if (p.endsWith('.d.ts')) {
        const text = readFileSync(p, 'utf8');
        for (const m of text.matchAll(
          /export (?:declare )?(?:abstract )?(?:class|function|const|let|interface|type|enum) (\w+)/g,
        ))
          names.add(m[1]!);
        for (const m of text.matchAll(/export (?:type )?\{([^}]*)\}/g)) {
          for (const part of m[1]!.split(',')) {
            const name = part
              .trim()
              .replace(/^type /, '')
              .split(/\s+as\s+/)
              .pop();
            if (name) names.add(name);
          }
        }
      }
    }
  };
  walk(path.join(dir, 'dist/src'));
  return names;
}

/** The backticked identifiers of the first column of the README's `## API` table (`name`, `name(args)`). */
function apiNames(readme: string): string[] {
  const start = readme.indexOf('\n## API\n');
  if (start < 0) return [];
  const end = readme.indexOf('\n## ', start + 1);
  const names: string[] = [];
  for (const row of readme.slice(start, end < 0 ? undefined : end).split('\n')) {
    const first = /^\| (.+?) \|/.exec(row)?.[1];
    if (!first || first === 'export' || /^-+$/.test(first)) continue;
    for (const m of first.matchAll(/`([A-Za-z_]\w*)(?:\([^`]*\))?`/g)) names.push(m[1]!);
  }
  return names;
}

describe('package READMEs', () => {
  for (const ws of workspaces()) {
    it(`${ws} has a README saying what it is, with an example, whose API table names real exports`, () => {
      const file = path.join(ROOT, ws, 'README.md');
      assert.ok(existsSync(file), `${ws}/README.md exists`);
      const readme = readFileSync(file, 'utf8');
      const name = (JSON.parse(readFileSync(path.join(ROOT, ws, 'package.json'), 'utf8')) as { name: string }).name;
      assert.ok(readme.startsWith(`# ${name}\n`), `${ws}/README.md starts with "# ${name}"`);
      assert.match(readme, /```(ts|sh|yaml)\n/, `${ws}/README.md has an example`);
      const names = apiNames(readme);
      if (names.length === 0) return; // a package with no programmatic API (the command, the benchmarks) says so
      const exported = exportedNames(path.join(ROOT, ws));
      const missing = names.filter((n) => !exported.has(n));
      assert.deepEqual(missing, [], `${ws}/README.md names exports the package does not have`);
    });
  }

  it('the API check notices a name the package does not export', () => {
    const names = apiNames(
      '# x\n\n## API\n\n| export | what |\n|---|---|\n| `planRules(options)`, `NoSuchThing` | x |\n',
    );
    assert.deepEqual(names, ['planRules', 'NoSuchThing']);
    assert.ok(!exportedNames(path.join(ROOT, 'packages/hijack')).has('NoSuchThing'));
    assert.ok(exportedNames(path.join(ROOT, 'packages/hijack')).has('planRules'));
  });
});
