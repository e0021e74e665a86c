// Writes the seed corpus of the native codec's fuzz targets into a directory: every committed seed frame and fuzz
// crasher (hex files), the shared seed frames when this machine has them, and the protocol fuzz suite's built seeds
// (when protocol's test build is there). One binary file per input, named by what it came from.
//   node seeds.js <out-dir>            one frame per input (fuzz_codec)
//   node seeds.js <out-dir> --stream   streams of 1-3 frames behind fuzz_stream's 5-byte prefix (cap, chunk sizes)
'use strict';

const fs = require('node:fs');
const path = require('node:path');

const [out, mode] = process.argv.slice(2);
const stream = mode === '--stream';
if (!out) {
  console.error('usage: node seeds.js <out-dir>');
  process.exit(2);
}
const repo = path.resolve(__dirname, '..', '..', '..');
fs.mkdirSync(out, { recursive: true });

function hexFiles(dir) {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const full = path.join(dir, e.name);
    return e.isDirectory() ? hexFiles(full) : e.name.endsWith('.hex') ? [full] : [];
  });
}

let count = 0;
const frames = [];
const write = (name, bytes) => {
  fs.writeFileSync(path.join(out, name.replace(/[^A-Za-z0-9._-]/g, '_')), stream ? Buffer.concat([PREFIXES[count % PREFIXES.length], bytes]) : bytes);
  frames.push(bytes);
  count++;
};
// fuzz_stream's prefix: cap selector (>= 16: 16 MiB; below: a small cap), then four chunk-size bytes.
const PREFIXES = [Buffer.from([0xff, 1, 7, 0, 22]), Buffer.from([0xff, 200, 3, 250, 15]), Buffer.from([4, 2, 2, 2, 2])];

// shared/ lies beside the work tree (developers' machines, CI), not inside it.
const shared = [...new Set(['/work/shared/fixtures', path.resolve(repo, '..', 'shared', 'fixtures')])];
const fixtureDirs = [path.join(repo, 'protocol', 'test', 'fixtures'), ...shared];
// Every test/fixtures/fuzz-* directory: the in-process campaigns' crashers and corpora.
const testFixtures = path.join(repo, 'test', 'fixtures');
if (fs.existsSync(testFixtures)) {
  for (const e of fs.readdirSync(testFixtures)) if (e.startsWith('fuzz-')) fixtureDirs.push(path.join(testFixtures, e));
}
for (const dir of fixtureDirs) {
  for (const file of hexFiles(dir)) {
    const text = fs.readFileSync(file, 'utf8').split('\n').filter((l) => !l.startsWith('#')).join('').replace(/\s+/g, '');
    write(`fixture-${path.relative(repo, file)}`, Buffer.from(text, 'hex'));
  }
}

const engine = path.join(repo, 'protocol', 'dist', 'test', 'helpers', 'fuzz-engine.js');
if (fs.existsSync(engine)) {
  const { buildCorpus } = require(engine);
  const corpus = buildCorpus(0x6d657368);
  for (const [i, s] of [...corpus.bolt, ...corpus.dubbo].entries()) if (s.bytes.length <= 65536) write(`protocol-seed-${i}`, s.bytes);
}
// Requests carrying a body method and trace context as the npm peers write them (trace_context.h's inputs).
const traceFramesModule = path.join(repo, 'protocol', 'dist', 'test', 'helpers', 'trace-frames.js');
if (fs.existsSync(traceFramesModule)) {
  const { traceFrames } = require(traceFramesModule);
  for (const [i, f] of traceFrames().entries()) write(`trace-frame-${i}`, f.frame);
}
if (stream) {
  // A few streams of several frames back to back, as a connection carries them.
  const n = frames.length;
  for (let i = 0; i < n; i++) {
    const a = frames[i], b = frames[(i * 7 + 3) % n], c = frames[(i * 13 + 5) % n];
    write(`stream-${i}`, Buffer.concat(i % 2 ? [a, b] : [a, b, c]));
  }
}
console.log(count);
