// Fuzz suite of @meshport/protocol: mutated Bolt v1/v2 and Dubbo frames and random bytes through detectProtocol,
// decodeFrame (with the Dubbo attachments scan), setRequestId and FrameSplitter, checked against a reference
// framer/decoder written from the wire facts.
//
// Deterministic: FUZZ_SEED (decimal or 0x-hex) picks the run, FUZZ_CASES the cases per protocol (default 100000;
// random buffers get half as many). A failure names the seed, the case index, the input and a shrunk input.
// Everything that runs codec code runs in worker threads (the three campaigns in parallel), so that a hang is cut
// off by a watchdog and reported with its input instead of freezing mocha, and memory is measured per isolate.

import { strict as assert } from 'node:assert';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { FRAME_SPLITTER_DEFAULTS } from '../src/index';
import {
  type Campaign,
  type CampaignResult,
  SLOW_CASE_MS,
  STAGES,
  caseInput,
  casesFromEnv,
  describeError,
  formatFinding,
  seedFromEnv,
} from './helpers/fuzz-engine';
import type { WorkerReply, WorkerTask } from './helpers/fuzz-worker';

const WORKER = path.join(__dirname, 'helpers', 'fuzz-worker.js');
/** No progress for this long is a hang: the slowest legitimate step (shrinking one finding) takes about 2 s. */
const HANG_MS = 15_000;
const MIB = 1024 * 1024;

type Outcome =
  | { kind: 'done'; reply: WorkerReply; wallMs: number }
  | { kind: 'hang' | 'crash'; error: string; caseIndex: number; stage: number; wallMs: number };

/**
 * Runs a task in a worker and resolves (never rejects) with what happened. A worker whose progress counter (case
 * index, or nothing for a one-shot task) stays still for HANG_MS is terminated: terminate() interrupts even a tight
 * synchronous loop.
 */
function runInWorker(task: WorkerTask, progress?: SharedArrayBuffer, heapMb = 512): Promise<Outcome> {
  const started = Date.now();
  const view = progress ? new Int32Array(progress) : undefined;
  return new Promise((resolve) => {
    const worker = new Worker(WORKER, { workerData: task, resourceLimits: { maxOldGenerationSizeMb: heapMb } });
    let settled = false;
    let lastIndex = Number.NaN;
    let lastMove = Date.now();
    const where = () => ({
      caseIndex: view ? Atomics.load(view, 0) : 0,
      stage: view ? Atomics.load(view, 1) : 0,
      wallMs: Date.now() - started,
    });
    const settle = (o: Outcome) => {
      if (settled) return;
      settled = true;
      clearInterval(watchdog);
      resolve(o);
    };
    const watchdog = setInterval(() => {
      const idx = view ? Atomics.load(view, 0) : 0;
      if (idx !== lastIndex) {
        lastIndex = idx;
        lastMove = Date.now();
      } else if (Date.now() - lastMove > HANG_MS) {
        const w = where();
        void worker.terminate();
        settle({ kind: 'hang', error: `no progress for ${HANG_MS} ms`, ...w });
      }
    }, 250);
    worker.on('message', (reply: WorkerReply) => settle({ kind: 'done', reply, wallMs: Date.now() - started }));
    worker.on('error', (e) => settle({ kind: 'crash', error: describeError(e), ...where() }));
    worker.on('exit', (code) =>
      settle({ kind: 'crash', error: `worker exited with code ${code} before answering`, ...where() }),
    );
  });
}

/** The problems a one-shot task found; a task that hung, crashed or could not run fails the test. */
async function probe(task: WorkerTask, heapMb?: number): Promise<{ problems: string[]; data: Record<string, number> }> {
  const o = await runInWorker(task, undefined, heapMb);
  if (o.kind !== 'done') assert.fail(`${task.task}: the worker ${o.kind === 'hang' ? 'hung' : 'crashed'}: ${o.error}`);
  if (o.reply.type === 'error') assert.fail(`${task.task}: ${o.reply.message}`);
  assert.equal(o.reply.type, 'probe');
  return o.reply;
}

function fmtCounts(counts: Record<string, number>): string {
  return Object.entries(counts)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => `${k.replace('MESHPORT_', '')}=${v}`)
    .join(' ');
}

describe('protocol fuzz', function () {
  this.timeout(120_000);
  const seed = seedFromEnv();
  const cases = casesFromEnv();
  const casesOf = (c: Campaign) => (c === 'random' ? Math.ceil(cases / 2) : cases);
  const outcomes = new Map<Campaign, Promise<Outcome>>();
  const replay = `FUZZ_SEED=0x${seed.toString(16)} FUZZ_CASES=${cases}`;

  before(() => {
    // The three campaigns start at once and share the cores while the one-shot tests below run.
    for (const c of ['bolt', 'dubbo', 'random'] as const) {
      const sab = new SharedArrayBuffer(8);
      outcomes.set(c, runInWorker({ task: 'campaign', campaign: c, seed, cases: casesOf(c), progress: sab }, sab));
    }
  });

  after(async () => {
    // Never leave a worker running, whichever tests were selected.
    await Promise.all(outcomes.values());
  });

  it('seed frames (encoders and hand-built; Bolt v1, v2, v2 with CRC; Dubbo) decode as built, split, take a new id', async () => {
    const { problems, data } = await probe({ task: 'seeds', seed });
    assert.ok(data.bolt >= 50 && data.dubbo >= 30, `seed corpus: ${data.bolt} Bolt, ${data.dubbo} Dubbo`);
    assert.deepEqual(problems, [], problems.join('\n'));
  });

  for (const campaign of ['bolt', 'dubbo', 'random'] as const) {
    const title =
      campaign === 'random'
        ? `random buffers (${casesOf(campaign)} cases): only ProtocolErrors, and agreement with the reference framer and decoder`
        : `${campaign === 'bolt' ? 'Bolt v1/v2' : 'Dubbo'} (${casesOf(campaign)} mutated frames): only ProtocolErrors, exact agreement ` +
          'with the reference, frameLength within the input, id rewrite, splitter under any chunking and cap';
    it(title, async () => {
      const outcome = await outcomes.get(campaign)!;
      if (outcome.kind !== 'done') {
        const { what, input } = caseInput(seed, campaign, outcome.caseIndex);
        assert.fail(
          `${campaign} campaign ${outcome.kind === 'hang' ? 'hung' : 'crashed'} (${outcome.error}) in ${what}, ` +
            `stage ${STAGES[outcome.stage] ?? outcome.stage} (${replay})\n    input: ${input.toString('hex')}`,
        );
      }
      if (outcome.reply.type === 'error')
        assert.fail(`${campaign} campaign failed to run: ${outcome.reply.message} (${replay})`);
      assert.equal(outcome.reply.type, 'campaign');
      const r: CampaignResult = outcome.reply.result;
      console.log(
        `      ${campaign}: ${r.cases} cases in ${(r.elapsedMs / 1000).toFixed(1)} s (seed 0x${r.seed.toString(16)}), ` +
          `${r.stats.decoded} decoded, ${r.stats.idRewrites} ids rewritten, ${r.stats.framesSplit} frames split, ` +
          `${r.stats.groups} Dubbo groups read, ${r.stats.attachmentsErrors} Dubbo bodies unreadable past the leading strings; ` +
          `decode errors: ${fmtCounts(r.stats.decodeErrors)}; splitter errors: ${fmtCounts(r.stats.splitterErrors)}; ` +
          `crc: ${fmtCounts(r.stats.crc)}`,
      );
      assert.equal(r.cases, casesOf(campaign));
      if (r.findings.length > 0) {
        const list = r.findings.map((f) => formatFinding(f, campaign, seed)).join('\n');
        assert.fail(
          `${r.findings.length} broken propert${r.findings.length === 1 ? 'y' : 'ies'} (${replay}):\n${list}`,
        );
      }
      assert.ok(r.slowestCaseMs < SLOW_CASE_MS, `case ${r.slowestCase} took ${r.slowestCaseMs} ms (${replay})`);
      // Bounded memory over the whole campaign, after full GCs (the interners may keep up to 4096 short names).
      const mib = (n: number) => `${(n / MIB).toFixed(1)} MiB`;
      assert.ok(r.heapGrowthBytes < 64 * MIB, `heap grew by ${mib(r.heapGrowthBytes)} over the campaign`);
      assert.ok(
        r.arrayBufferGrowthBytes < 64 * MIB,
        `ArrayBuffers grew by ${mib(r.arrayBufferGrowthBytes)} over the campaign`,
      );
      // The generator reaches every outcome it is meant to reach: a generator gone blind would otherwise pass.
      if (r.cases >= 20_000) {
        const want: Record<Campaign, { decode: string[]; split: string[]; minDecoded: number }> = {
          bolt: {
            decode: [
              'FRAME_TRUNCATED',
              'BOLT_BAD_VERSION',
              'BOLT_BAD_TYPE',
              'BOLT_BAD_CMDCODE',
              'BOLT_BAD_LENGTH',
              'BOLT_BAD_HEADER_MAP',
              'BOLT_BAD_CRC',
            ],
            split: ['FRAME_OVERSIZE', 'FRAME_TRUNCATED', 'BOLT_BAD_LENGTH', 'BAD_MAGIC'],
            minDecoded: 0.2,
          },
          dubbo: {
            decode: ['FRAME_TRUNCATED', 'BAD_MAGIC', 'DUBBO_BAD_LENGTH', 'DUBBO_BAD_BODY'],
            split: ['FRAME_OVERSIZE', 'FRAME_TRUNCATED', 'DUBBO_BAD_LENGTH', 'BAD_MAGIC'],
            minDecoded: 0.2,
          },
          random: {
            decode: ['FRAME_TRUNCATED', 'BAD_MAGIC', 'BOLT_BAD_TYPE', 'BOLT_BAD_VERSION'],
            split: ['BAD_MAGIC', 'FRAME_TRUNCATED'],
            minDecoded: 0,
          },
        };
        const w = want[campaign];
        for (const code of w.decode) {
          assert.ok(r.stats.decodeErrors[`MESHPORT_${code}`] > 0, `no case reached decodeFrame's MESHPORT_${code}`);
        }
        for (const code of w.split) {
          assert.ok(r.stats.splitterErrors[`MESHPORT_${code}`] > 0, `no case reached the splitter's MESHPORT_${code}`);
        }
        assert.ok(r.stats.decoded >= w.minDecoded * r.cases, `only ${r.stats.decoded} of ${r.cases} cases decoded`);
        if (campaign === 'bolt') {
          assert.ok(
            r.stats.crc.ok > 0 && r.stats.crc.bad > 0,
            `CRC outcomes not both reached: ${fmtCounts(r.stats.crc)}`,
          );
        }
        if (campaign !== 'random') {
          assert.ok(r.stats.services > 0.05 * r.cases, `only ${r.stats.services} decoded frames carried a service`);
        }
        if (campaign === 'dubbo') {
          // Generated and mutated bodies reach the attachments scan, both to a group and to an unreadable body.
          assert.ok(r.stats.groups > 0.03 * r.cases, `only ${r.stats.groups} decoded frames carried a group`);
          assert.ok(
            r.stats.attachmentsErrors > 0.03 * r.cases,
            `only ${r.stats.attachmentsErrors} bodies were unreadable past the leading strings`,
          );
        }
      }
    });
  }

  it('a header claiming 2 GiB fails with MESHPORT_FRAME_OVERSIZE after the header alone and allocates nothing', async () => {
    assert.equal(FRAME_SPLITTER_DEFAULTS.maxFrameSize, 16 * MIB);
    const { problems } = await probe({ task: 'claim-over-cap' });
    assert.deepEqual(problems, [], problems.join('\n'));
  });

  it('maxFrameSize is inclusive: a frame of exactly maxFrameSize passes, with one byte less of cap it is refused', async () => {
    const { problems } = await probe({ task: 'cap-boundary' });
    assert.deepEqual(problems, [], problems.join('\n'));
  });

  it('a header alone, claiming less than the cap, does not make the splitter allocate the claimed frame', async () => {
    const { problems, data } = await probe({ task: 'claim-under-cap', splitters: 8 });
    assert.equal(data.held, 8 * 24, 'each splitter holds exactly the header it was sent');
    const rss = `RSS grew by ${(data.rssGrowthBytes / MIB).toFixed(1)} MiB: reserved, not yet touched`;
    assert.deepEqual(problems, [], `${problems.join('\n')} (${rss})`);
  });

  it('decoding thousands of distinct long service names keeps retained memory bounded (route-string interning)', async () => {
    const { problems } = await probe({ task: 'interner', names: 8192, nameBytes: 8192 }, 1024);
    assert.deepEqual(problems, [], problems.join('\n'));
  });

  it('setRequestId on bytes that are not a whole frame throws only ProtocolError', async () => {
    const { problems, data } = await probe({ task: 'set-request-id', seed });
    assert.ok(data.inputs > 1000, `only ${data.inputs} inputs`);
    assert.deepEqual(problems, [], `setRequestId threw something other than a ProtocolError:\n${problems.join('\n')}`);
  });
});
