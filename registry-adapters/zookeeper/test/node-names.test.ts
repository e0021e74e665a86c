// ZooKeeper node names checked against the SDKs that write them, not against a copy of their rules: Java's own
// java.net.URLEncoder (what Dubbo and Java sofa-rpc call) run in a JVM, and sofa-rpc-node's own ZooKeeper registry.

import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import jute, { type Record as JuteRecord } from 'node-zookeeper-client/lib/jute';
import { RewriteOnlyTakeover, decodeNodeName, encodeNodeName, parseProviderUrl } from '@meshport/registry-core';
import { quietLogger, skipOrFail } from '@meshport/testkit';
import { rewriteProviderList } from '../src/facade-rewrite';

/** Strings where URLEncoder and encodeURIComponent part ways, or where a sloppy imitation of either goes wrong. */
const TRICKY = [
  "!'()~*",
  'a b',
  ' ',
  '+',
  '%',
  '%20',
  '%2C',
  '&=',
  '?#/:;@,$[]{}|\\^`"<>',
  '.-_',
  'Zürich',
  'é中😀',
  '\u0000\t\n\r\u007f',
  '\u00a0\u00ff\u0100\u07ff\u0800\uffff',
  '\ud800',
  'a\udc00b',
  '\udbff',
  '😀\ud83d',
  "bolt://10.0.0.1:12200?appName=my app&note=(a)!~'*._-&city=Zürich",
  'dubbo://10.0.0.9:20880/org.apache.dubbo.demo.DemoService?anyhost=true&application=demo-provider' +
    '&interface=org.apache.dubbo.demo.DemoService&methods=sayHello%2CsayHelloAsync&owner=ops (team)&side=provider',
];

/** Every character 0-255 on its own, and a walk through the rest of the BMP and beyond, pairs kept whole. */
function everyKind(): string[] {
  const out: string[] = [];
  for (let c = 0; c < 0x100; c++) out.push(String.fromCharCode(c));
  for (let c = 0x100; c < 0x10000; c += 0x3f1) out.push(String.fromCharCode(c));
  for (let c = 0x10000; c < 0x110000; c += 0x7ff1) out.push(String.fromCodePoint(c));
  return out;
}

/** A string has no unpaired surrogate (encodeURIComponent, so sofa-rpc-node, refuses those). */
const wellFormed = (s: string) => !/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/.test(s);

/**
 * A JVM's URLEncoder.encode(s, "UTF-8") of each string. The strings travel as hex UTF-16 code units, one per line,
 * so that newlines and unpaired surrogates reach Java exactly; the answers are ASCII by construction.
 */
const JAVA_SOURCE = `
import java.io.*;
import java.net.URLEncoder;
import java.nio.charset.StandardCharsets;

public class NodeNames {
  public static void main(String[] args) throws Exception {
    BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.US_ASCII));
    PrintStream out = new PrintStream(System.out, false, "US-ASCII");
    for (String line; (line = in.readLine()) != null;) {
      StringBuilder s = new StringBuilder();
      for (int i = 0; i < line.length(); i += 4) s.append((char) Integer.parseInt(line.substring(i, i + 4), 16));
      out.println(URLEncoder.encode(s.toString(), "UTF-8"));
    }
    out.flush();
  }
}
`;

function javaMissing(): string | undefined {
  const probe = spawnSync('java', ['-version'], { encoding: 'utf8' });
  const error = probe.error as NodeJS.ErrnoException | undefined;
  return error?.code === 'ENOENT' ? 'no java on PATH' : undefined;
}

/** Runs JAVA_SOURCE with the JDK's single-file source launcher (Java 11+). */
function javaUrlEncode(strings: string[]): string[] {
  const dir = mkdtempSync(path.join(tmpdir(), 'meshport-urlencoder-'));
  try {
    const file = path.join(dir, 'NodeNames.java');
    writeFileSync(file, JAVA_SOURCE);
    const input =
      strings
        .map((s) => [...Array(s.length).keys()].map((i) => s.charCodeAt(i).toString(16).padStart(4, '0')).join(''))
        .join('\n') + '\n';
    const run = spawnSync('java', [file], { input, encoding: 'utf8', timeout: 120_000 });
    if (run.error) throw run.error;
    assert.equal(run.status, 0, `java failed: ${run.stderr}`);
    const lines = run.stdout.split('\n');
    assert.equal(lines.pop(), '', 'the output ends with a newline');
    assert.equal(lines.length, strings.length, 'one answer per string');
    return lines;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** sofa-rpc-node 2.x's ZooKeeper registry (lib/registry/zk/data_client), with a stand-in for its ZooKeeper client. */
interface SofaZkRegistry {
  register(config: { interfaceName: string; url: string }): Promise<void>;
  subscribe(config: { interfaceName: string }, listener: (urls: string[]) => void): void;
  close(): Promise<void>;
}

/**
 * The registry of a sofa-rpc-node app whose ZooKeeper is `zk`: the node paths it creates are recorded, and a
 * children watch is answered with `children` at once.
 */
function sofaRpcNodeRegistry(children: string[] = []): { registry: SofaZkRegistry; created: string[] } {
  const created: string[] = [];
  const client = {
    on() {},
    await: async () => undefined,
    mkdirp: async () => undefined,
    exists: async () => false,
    remove: async () => undefined,
    create: async (node: string) => {
      created.push(node);
    },
    watchChildren: (_path: string, cb: (err: Error | null, names: string[]) => void) =>
      setImmediate(() => cb(null, children)),
    unWatchChildren() {},
    close: async () => undefined,
  };
  const Registry = require('sofa-rpc-node/lib/registry/zk/data_client') as new (options: object) => SofaZkRegistry;
  const registry = new Registry({
    logger: quietLogger,
    address: '127.0.0.1:2181',
    zookeeper: { createClient: () => client },
  });
  return { registry, created };
}

describe('ZooKeeper node names against the SDKs themselves', () => {
  describe("Java's java.net.URLEncoder (Dubbo, Java sofa-rpc)", function () {
    this.timeout(120_000);

    before(function () {
      const missing = javaMissing();
      if (missing) skipOrFail(this, `the URLEncoder oracle needs a JDK: ${missing}`);
    });

    it('names every string as URLEncoder.encode(url, "UTF-8") does: !\'()~ escaped, * kept, space as +, UTF-8 bytes', () => {
      const strings = [...TRICKY, ...everyKind()];
      const java = javaUrlEncode(strings);
      const wrong = strings.flatMap((s, i) => {
        const ours = encodeNodeName(s, 'java');
        return ours === java[i] ? [] : [{ input: JSON.stringify(s), java: java[i], meshport: ours }];
      });
      assert.deepEqual(wrong, []);
      // Not a vacuous agreement: the two SDK styles really differ on these.
      assert.notEqual(java[0], encodeURIComponent(TRICKY[0]!));
      assert.equal(java[0], '%21%27%28%29%7E*');
    });

    it('reads back every name Java wrote as the string it encoded', () => {
      const strings = [...TRICKY, ...everyKind()].filter(wellFormed);
      const java = javaUrlEncode(strings);
      const wrong = strings.flatMap((s, i) =>
        decodeNodeName(java[i]!) === s ? [] : [{ input: JSON.stringify(s), java: java[i] }],
      );
      assert.deepEqual(wrong, []);
    });
  });

  describe("sofa-rpc-node's ZooKeeper registry", () => {
    const IFACE = 'com.nodejs.test.TestService';
    const urlWith = (value: string) => `bolt://10.0.0.1:12200?interface=${IFACE}&version=1.0&note=${value}`;

    it('creates its provider node under the name meshport writes in the js style', async () => {
      const strings = [...TRICKY, ...everyKind()].filter(wellFormed).map(urlWith);
      const { registry, created } = sofaRpcNodeRegistry();
      for (const url of strings) await registry.register({ interfaceName: IFACE, url });
      await registry.close();
      assert.equal(created.length, strings.length);
      const dir = `/sofa-rpc/${IFACE}/providers/`;
      const wrong = strings.flatMap((url, i) => {
        const name = created[i]!.slice(dir.length);
        return created[i]!.startsWith(dir) && name === encodeNodeName(url, 'js') && decodeNodeName(name) === url
          ? []
          : [{ url: JSON.stringify(url), sofa: created[i], meshport: encodeNodeName(url, 'js') }];
      });
      assert.deepEqual(wrong, []);
    });

    it('refuses a URL with an unpaired surrogate, as meshport does', async () => {
      const { registry } = sofaRpcNodeRegistry();
      await assert.rejects(registry.register({ interfaceName: IFACE, url: urlWith('\ud800') }), URIError);
      assert.throws(() => encodeNodeName(urlWith('\ud800'), 'js'), URIError);
      await registry.close();
    });

    it('reads the names meshport writes as the URLs they name', async () => {
      const urls = TRICKY.filter(wellFormed).map((s, i) => urlWith(s).replace('10.0.0.1', `10.0.1.${i}`));
      const { registry } = sofaRpcNodeRegistry(urls.map((u) => encodeNodeName(u, 'js')));
      const seen = await new Promise<string[]>((resolve) => registry.subscribe({ interfaceName: IFACE }, resolve));
      await registry.close();
      assert.deepEqual(seen, urls);
    });

    it('reads the list the facade shows it as the sidecar outbound address, parameters intact', async () => {
      const real = `bolt://192.168.1.20:12200?interface=${IFACE}&version=1.0&appName=my app&note=(a)!~'*`;
      const frame = packet(
        new jute.protocol.ReplyHeader(9, Buffer.alloc(8), 0),
        new jute.protocol.GetChildren2Response([encodeURIComponent(real)], new jute.data.Stat()),
      );
      const path = `/sofa-rpc/${IFACE}/providers`;
      const outbound = { host: '127.0.0.1', port: 12201 };
      const list = rewriteProviderList(
        frame,
        { kind: 'providers', type: jute.OP_CODES.GET_CHILDREN2!, iface: IFACE, path },
        new RewriteOnlyTakeover({ host: '10.0.0.1', port: 12220 }, outbound),
        { byAppPath: new Map(), byUpstreamPath: new Map() },
      );
      assert.ok(list.frame);
      const header = new jute.protocol.ReplyHeader();
      const body = new jute.protocol.GetChildren2Response();
      body.deserialize(list.frame, 4 + header.deserialize(list.frame, 4));
      const { registry } = sofaRpcNodeRegistry(body.children as string[]);
      const seen = await new Promise<string[]>((resolve) => registry.subscribe({ interfaceName: IFACE }, resolve));
      await registry.close();
      assert.equal(seen.length, 1);
      const url = new URL(seen[0]!);
      assert.equal(url.host, `${outbound.host}:${outbound.port}`);
      assert.deepEqual(parseProviderUrl(seen[0]!).params, parseProviderUrl(real).params);
    });
  });
});

function packet(...records: JuteRecord[]): Buffer {
  const out = Buffer.alloc(4 + records.reduce((n, r) => n + r.byteLength(), 0));
  out.writeInt32BE(out.length - 4, 0);
  let at = 4;
  for (const record of records) at += record.serialize(out, at);
  return out;
}
