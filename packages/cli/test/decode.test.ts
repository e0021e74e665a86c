// `meshport decode` as a user runs it: the real binary, every input form, good and bad input.

import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { encodeBoltHeartbeat, encodeDubboErrorResponse, DubboStatus } from '@meshport/protocol';

const BIN = path.resolve(__dirname, '../../bin/meshport.js');
const FIXTURES = path.resolve(__dirname, '../../../../protocol/test/fixtures');

function fixture(name: string): Buffer {
  return Buffer.from(readFileSync(path.join(FIXTURES, name), 'utf8').trim(), 'hex');
}

function meshport(args: string[], input?: Buffer | string, env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [BIN, ...args], { input, env: { ...process.env, NO_COLOR: '', ...env } });
  return { code: r.status, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

function jsonLines(stdout: string): Record<string, unknown>[] {
  return stdout
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));
}

const boltRequest = fixture('bolt-v1-request.hex');
const dubboRequest = fixture('dubbo-request.hex');
const boltCrcRequest = fixture('bolt-v2-crc-request.hex');

describe('meshport decode', () => {
  it('--json --hex prints the header fields of a Bolt request', () => {
    const r = meshport(['decode', '--json', '--hex', boltRequest.toString('hex')]);
    assert.equal(r.code, 0, r.stderr);
    const [frame] = jsonLines(r.stdout);
    assert.deepEqual(frame, {
      protocol: 'bolt',
      protocolVersion: 1,
      kind: 'request',
      requestId: 7,
      service: 'com.example.EchoService:1.0',
      serialization: 'hessian2',
      timeoutMs: 3000,
      className: 'com.alipay.sofa.rpc.core.request.SofaRequest',
      headers: { service: 'com.example.EchoService:1.0' },
      frameLength: boltRequest.length,
      bodyLength: 255,
      offset: 0,
    });
  });

  it('--json prints every frame kind of both protocols, one line each, with their offsets', () => {
    const names = [
      'bolt-v1-request.hex',
      'bolt-v1-response.hex',
      'bolt-v1-heartbeat.hex',
      'bolt-v1-heartbeat-ack.hex',
      'bolt-oneway.hex',
      'bolt-v2-crc-request.hex',
      'dubbo-request.hex',
      'dubbo-response.hex',
      'dubbo-heartbeat.hex',
      'dubbo-heartbeat-ack.hex',
      'dubbo-null-version-request.hex',
    ];
    const frames = names.map(fixture);
    const r = meshport(['decode', '--json', '--hex', Buffer.concat(frames).toString('hex')]);
    assert.equal(r.code, 0, r.stderr);
    const lines = jsonLines(r.stdout);
    assert.deepEqual(
      lines.map((l) => l.kind),
      [
        'request',
        'response',
        'heartbeat',
        'heartbeat-ack',
        'oneway',
        'request',
        'request',
        'response',
        'heartbeat',
        'heartbeat-ack',
        'request',
      ],
    );
    let offset = 0;
    lines.forEach((l, i) => {
      assert.equal(l.offset, offset, names[i]);
      offset += frames[i].length;
    });
    assert.equal(lines[5].crc, 'ok');
    assert.equal(lines[6].service, 'org.apache.dubbo.demo.DemoService');
    assert.equal(lines[6].version, '1.0.0');
    assert.equal(lines[6].method, 'sayHello');
    assert.equal(lines[6].requestId, '42');
    assert.equal(lines[7].status, 20);
    assert.equal(lines[7].statusName, 'OK');
    assert.equal(lines[10].version, null);
  });

  it('reads --base64, --file and stdin, each as raw bytes or hex text, alike', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'meshport-decode-'));
    try {
      const file = path.join(dir, 'frames.bin');
      writeFileSync(file, Buffer.concat([boltRequest, dubboRequest]));
      const hexFile = path.join(dir, 'frames.hex');
      writeFileSync(hexFile, `${boltRequest.toString('hex')}\n${dubboRequest.toString('hex')}\n`);
      const runs = [
        meshport(['decode', '--json', '--base64', Buffer.concat([boltRequest, dubboRequest]).toString('base64')]),
        meshport(['decode', '--json', '--file', file]),
        meshport(['decode', '--json', '--file', hexFile]),
        meshport(['decode', '--json'], Buffer.concat([boltRequest, dubboRequest])),
        meshport(['decode', '--json'], `${boltRequest.toString('hex')}\n${dubboRequest.toString('hex')}\n`),
      ];
      for (const r of runs) {
        assert.equal(r.code, 0, r.stderr);
        assert.deepEqual(
          jsonLines(r.stdout).map((l) => l.service),
          ['com.example.EchoService:1.0', 'org.apache.dubbo.demo.DemoService'],
        );
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('--body decodes SOFA and Dubbo bodies into plain values', () => {
    const r = meshport([
      'decode',
      '--json',
      '--body',
      '--hex',
      Buffer.concat([boltRequest, dubboRequest]).toString('hex'),
    ]);
    assert.equal(r.code, 0, r.stderr);
    const [bolt, dubbo] = jsonLines(r.stdout);
    const [sofaRequest, arg] = bolt.body as [Record<string, unknown>, unknown];
    assert.equal(sofaRequest.methodName, 'echo');
    assert.equal(sofaRequest.targetServiceUniqueName, 'com.example.EchoService:1.0');
    assert.equal(arg, 'hello');
    const values = dubbo.body as unknown[];
    assert.deepEqual(values.slice(0, 6), [
      '5.3.0',
      'org.apache.dubbo.demo.DemoService',
      '1.0.0',
      'sayHello',
      'Ljava/lang/String;',
      'world',
    ]);
    assert.equal((values[6] as Record<string, unknown>).group, 'g1');
  });

  it('after bad bytes: prints every good frame before them, then one error line with the code and offset, exit 1', () => {
    const input = Buffer.concat([boltRequest, dubboRequest, Buffer.from('GET / HTTP/1.1\r\n')]);
    const r = meshport(['decode', '--json', '--hex', input.toString('hex')]);
    assert.equal(r.code, 1);
    assert.equal(jsonLines(r.stdout).length, 2);
    const errLines = r.stderr.trim().split('\n');
    assert.equal(errLines.length, 1);
    assert.match(
      errLines[0],
      new RegExp(`MESHPORT_BAD_MAGIC: .*\\(at byte ${boltRequest.length + dubboRequest.length}\\)$`),
    );
  });

  it('a truncated frame: the good ones print, then MESHPORT_FRAME_TRUNCATED at the end of the input', () => {
    const input = Buffer.concat([dubboRequest, boltRequest.subarray(0, 40)]);
    const r = meshport(['decode', '--json', '--hex', input.toString('hex')]);
    assert.equal(r.code, 1);
    assert.equal(jsonLines(r.stdout).length, 1);
    assert.match(r.stderr, new RegExp(`MESHPORT_FRAME_TRUNCATED: .*\\(at byte ${input.length}\\)`));
  });

  it('a bad CRC: the frame is shown with crc "bad", then MESHPORT_BOLT_BAD_CRC at the CRC field, exit 1', () => {
    const bad = Buffer.from(boltCrcRequest);
    bad[bad.length - 10] ^= 0xff;
    const r = meshport(['decode', '--json', '--hex', bad.toString('hex')]);
    assert.equal(r.code, 1);
    assert.equal(jsonLines(r.stdout)[0].crc, 'bad');
    assert.match(r.stderr, new RegExp(`MESHPORT_BOLT_BAD_CRC: .*\\(at byte ${bad.length - 4}\\)`));
  });

  it('an oversize header against --max-frame-size is refused before its body arrives', () => {
    const r = meshport(['decode', '--json', '--max-frame-size', '64', '--hex', boltRequest.toString('hex')]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /MESHPORT_FRAME_OVERSIZE: .*64-byte maximum \(at byte 0\)/);
  });

  it('bad hex, empty input and usage mistakes get clear messages and their own exit codes', () => {
    const hex = meshport(['decode', '--hex', '01zz']);
    assert.equal(hex.code, 1);
    assert.match(hex.stderr, /invalid hex: 'z' is not a hex digit/);
    const empty = meshport(['decode'], '');
    assert.equal(empty.code, 1);
    assert.match(empty.stderr, /no input/);
    const two = meshport(['decode', '--hex', '01', '--base64', 'AQ==']);
    assert.equal(two.code, 2);
    assert.match(two.stderr, /^meshport decode: option '--hex <HEX>' cannot be used with option '--base64 <B64>'/);
    const unknown = meshport(['frobnicate']);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /unknown command 'frobnicate'/);
    const flag = meshport(['decode', '--nope']);
    assert.equal(flag.code, 2);
  });

  it('the readable view names protocol, kind, id, service and status, coloured only when asked', () => {
    const err = encodeDubboErrorResponse({
      requestId: 5,
      status: DubboStatus.SERVICE_NOT_FOUND,
      message: 'no provider',
    });
    const input = Buffer.concat([boltRequest, encodeBoltHeartbeat(9), err]).toString('hex');
    const plain = meshport(['decode', '--hex', input]);
    assert.equal(plain.code, 0, plain.stderr);
    // biome-ignore lint/suspicious/noControlCharactersInRegex: an ANSI colour sequence starts with ESC
    assert.doesNotMatch(plain.stdout, /\x1b\[/);
    assert.match(plain.stdout, /bolt v1 request id=7 com\.example\.EchoService:1\.0/);
    assert.match(plain.stdout, /bolt v1 heartbeat id=9/);
    assert.match(plain.stdout, /dubbo response id=5 SERVICE_NOT_FOUND\(60\)/);
    const coloured = meshport(['decode', '--color', '--hex', input]);
    // biome-ignore lint/suspicious/noControlCharactersInRegex: an ANSI colour sequence starts with ESC
    assert.match(coloured.stdout, /\x1b\[/);
  });
});
