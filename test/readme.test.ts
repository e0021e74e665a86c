// The README's front door as a new user meets it: a fresh clone of the repository, then the demo command of its
// "Two commands" section, run verbatim (it installs and builds the clone from nothing). The other command, `npm test`,
// is what CI runs on a clean clone (.ci/run), so this suite checks that .ci/run is exactly that command rather than
// running every suite a second time inside the first run. And the docs stand on their own: every link in them
// reaches a file (and heading) in the repository.

import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const ROOT = path.resolve(__dirname, '../..');

/** Shell lines without comments and blank lines. */
function commands(script: string): string[] {
  return script
    .split('\n')
    .map((line) => line.replace(/#.*$/, '').trim())
    .filter(Boolean);
}

/** The commands of the first shell block under "## Two commands", comments dropped. */
function twoCommands(): string[] {
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## Two commands'));
  const block = /```sh\n([\s\S]*?)```/.exec(section);
  assert.ok(block, 'the Two commands section has a sh block');
  return commands(block[1]!);
}

describe('README: the two commands on a fresh clone', function () {
  this.timeout(20 * 60_000);

  it('names exactly npm run demo and npm test', () => {
    assert.deepEqual(twoCommands(), ['npm run demo', 'npm test']);
  });

  it('CI (.ci/run) runs exactly the test command the README gives, from the repository root', () => {
    const ci = commands(readFileSync(path.join(ROOT, '.ci/run'), 'utf8'));
    // Shell set-up lines (strict mode, cd to the root, CI=true) aside, the one command is the README's.
    const setup = [/^set -/, /^cd "\$\(dirname "\$0"\)\/\.\."$/, /^export CI=true$/];
    const steps = ci.filter((line) => !setup.some((re) => re.test(line)));
    assert.deepEqual(steps, [twoCommands()[1]]);
    assert.ok(ci.includes('set -euo pipefail'), '.ci/run fails on the first failing command');
    // Kernel tests skip outside CI and fail under it: CI must not depend on its runner to say so.
    assert.ok(ci.includes('export CI=true'), '.ci/run sets CI=true itself');
  });

  it('npm run demo installs, builds and shows the whole flow in a new clone', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'meshport-readme-'));
    // mkdtemp makes it 0700; the suites run some processes as other uids (the sidecar as 1337, doctor's non-root case),
    // which must reach the clone's files as they reach a checkout anywhere else.
    chmodSync(dir, 0o755);
    try {
      const clone = spawnSync('git', ['clone', '--quiet', ROOT, dir], { encoding: 'utf8' });
      assert.equal(clone.status, 0, clone.stderr);
      const [demo] = twoCommands();
      const demoRun = spawnSync('bash', ['-c', demo!], {
        cwd: dir,
        encoding: 'utf8',
        env: { ...process.env, MESHPORT_DEMO_SECONDS: '2', NO_COLOR: '1' },
        timeout: 15 * 60_000,
        maxBuffer: 256 * 1024 * 1024,
      });
      assert.equal(
        demoRun.status,
        0,
        `${demo} failed:\n${demoRun.stdout.slice(-4000)}\n${demoRun.stderr.slice(-4000)}`,
      );
      // The demo's summary: calls through both pods, none failed, everything stopped.
      // (pod addresses: network namespaces as root, loopback ports otherwise)
      assert.match(
        demoRun.stdout,
        /consumer pod outbound route com\.example\.EchoService:1\.0 -> [\d.]+:\d+ {2}= provider pod inbound/,
      );
      assert.match(
        demoRun.stdout,
        /provider pod inbound {2}com\.example\.EchoService:1\.0#echo {2}calls [1-9]\d* {2}success 100%/,
      );
      assert.doesNotMatch(demoRun.stdout, /failed [1-9]/);
      assert.match(demoRun.stdout, /^stopped: zookeeper pid \d+/m);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

/** The repository's files as a clone has them (tracked, or new and not ignored), relative to ROOT. */
function repositoryFiles(): string[] {
  const listed = spawnSync('git', ['ls-files', '--cached', '--others', '--exclude-standard', '-z'], {
    cwd: ROOT,
    encoding: 'utf8',
  });
  assert.equal(listed.status, 0, listed.stderr);
  return [...new Set(listed.stdout.split('\0').filter(Boolean))].filter((f) => existsSync(path.join(ROOT, f)));
}

/** GitHub's anchors for the headings of a markdown text: lower case, punctuation dropped, spaces as '-', repeats -1, -2. */
function anchorsOf(markdown: string): Set<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  for (const line of withoutCode(markdown).split('\n')) {
    const heading = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
    if (!heading) continue;
    const text = heading[1]!.replace(/`/g, '').replace(/\[([^\]]*)\]\([^)]*\)/g, '$1');
    const slug = text
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, '')
      .replace(/\s/g, '-');
    const n = seen.get(slug) ?? 0;
    seen.set(slug, n + 1);
    anchors.add(n === 0 ? slug : `${slug}-${n}`);
  }
  for (const html of markdown.matchAll(/<a\s+(?:name|id)="([^"]+)"/g)) anchors.add(html[1]!);
  return anchors;
}

/** The text with fenced code blocks and inline code blanked: links shown as code are examples, not links. */
function withoutCode(markdown: string): string {
  return markdown
    .replace(/^(```|~~~)[\s\S]*?^\1/gm, (block) => block.replace(/[^\n]/g, ' '))
    .replace(/`[^`\n]*`/g, (code) => ' '.repeat(code.length));
}

/** Why `target`, linked from repository file `from`, does not reach a file or heading of the repository; undefined when it does. */
function brokenLink(from: string, target: string): string | undefined {
  if (/^[a-z][a-z0-9+.-]*:/i.test(target)) return undefined; // https:, mailto: and the like: another site
  const [file, anchor] = target.split('#', 2) as [string, string | undefined];
  if (file.startsWith('/')) return 'an absolute path: not in a clone of the repository';
  const resolved =
    file === '' ? path.join(ROOT, from) : path.resolve(ROOT, path.dirname(from), decodeURIComponent(file));
  const inside = path.relative(ROOT, resolved);
  if (inside.startsWith('..') || path.isAbsolute(inside)) return 'outside the repository';
  if (!existsSync(resolved)) return 'no such file';
  if (anchor === undefined || anchor === '') return undefined;
  if (statSync(resolved).isDirectory() || !resolved.endsWith('.md'))
    return `an anchor into ${inside}, which has no headings`;
  if (!anchorsOf(readFileSync(resolved, 'utf8')).has(anchor)) return `${inside} has no heading #${anchor}`;
  return undefined;
}

describe('docs: every link stays inside the repository and reaches what it names', () => {
  const files = repositoryFiles();
  const text = (f: string) => readFileSync(path.join(ROOT, f), 'utf8');

  it('the docs pages a newcomer needs are in the repository, and LICENSE matches the packages', () => {
    for (const page of ['docs/architecture.md', 'docs/protocols.md', 'LICENSE'])
      assert.ok(files.includes(page), `${page} is in the repository`);
    assert.match(text('LICENSE'), /Apache License\s+Version 2\.0, January 2004/);
    const licenses = files
      .filter((f) => /(^|\/)package\.json$/.test(f))
      .map((f) => [f, (JSON.parse(text(f)) as { license?: string }).license]);
    for (const [f, license] of licenses) assert.equal(license, 'Apache-2.0', `${f} license`);
  });

  it('markdown links reach a file of the repository, and a heading of it when they name one', () => {
    const broken: string[] = [];
    for (const f of files.filter((name) => name.endsWith('.md'))) {
      const lines = withoutCode(text(f)).split('\n');
      lines.forEach((line, i) => {
        for (const link of line.matchAll(/!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) {
          const why = brokenLink(f, link[1]!);
          if (why) broken.push(`${f}:${i + 1}: ${link[1]}: ${why}`);
        }
      });
    }
    assert.deepEqual(broken, []);
  });

  it('no file points at pages outside the repository, and the pages the docs name by path exist', () => {
    const outside: string[] = [];
    for (const f of files) {
      if (/(^|\/)(package-lock\.json|LICENSE)$/.test(f) || /\.(hex|svg|png|jsonl)$/.test(f)) continue;
      text(f)
        .split('\n')
        .forEach((line, i) => {
          // The design notes this repository was started from lived beside the work tree; users do not have them.
          if (/(\/work\/shared|\.\.\/shared)\/[\w.-]+\.md|\bshared\/(DESIGN|PROTOCOLS|STYLE)\.md/.test(line))
            outside.push(`${f}:${i + 1}: ${line.trim()}`);
        });
    }
    assert.deepEqual(outside, []);
    // Pages named in prose or comments of the docs (`README.md#kubernetes-before-129 explains the catch`) exist too.
    const named: string[] = [];
    for (const f of files.filter((name) => name.startsWith('docs/') && /\.(ya?ml|md)$/.test(name))) {
      withoutCode(text(f))
        .split('\n')
        .forEach((line, i) => {
          for (const ref of line
            .replace(/\]\([^)]*\)/g, '')
            .matchAll(/(?<![\w/.-])([\w-]+(?:\/[\w.-]+)*\.md)(#[\w-]+)?/g)) {
            const why = brokenLink(f, ref[1]! + (ref[2] ?? ''));
            if (why && brokenLink('', ref[1]! + (ref[2] ?? ''))) named.push(`${f}:${i + 1}: ${ref[0]}: ${why}`);
          }
        });
    }
    assert.deepEqual(named, []);
  });

  it('has no text that points at what users do not have: later issues, design sections, a catch explained nowhere', () => {
    const router = text('docs/router.md');
    assert.doesNotMatch(router, /a later issue/);
    assert.doesNotMatch(router, /DESIGN\.md|§/);
    const recipe = text('docs/kubernetes/meshport-pod.yaml').replace(/\n#\s*/g, ' ');
    const catchRef = /\(([\w.-]+\.md#[\w-]+) explains the catch\)/.exec(recipe);
    assert.ok(catchRef, 'the recipe names the section that explains the catch');
    assert.equal(brokenLink('docs/kubernetes/meshport-pod.yaml', catchRef[1]!), undefined);
  });

  it('sees a link that leaves the repository, a missing file and a missing heading', () => {
    assert.equal(brokenLink('README.md', '../beside-the-clone/NOTES.md'), 'outside the repository');
    assert.equal(brokenLink('docs/router.md', 'no-such-page.md'), 'no such file');
    assert.equal(
      brokenLink('docs/router.md', 'sidecar.md#no-such-heading'),
      'docs/sidecar.md has no heading #no-such-heading',
    );
    assert.equal(brokenLink('docs/router.md', 'sidecar.md#signals'), undefined);
    assert.equal(brokenLink('docs/router.md', 'https://example.com/x'), undefined);
  });
});
