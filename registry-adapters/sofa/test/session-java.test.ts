// The SOFA Registry bodies of the session client and of its stand-in server, held to Caucho's Java Hessian reading
// them into the model classes (and the client's reader to what Java writes). hessian.js alone would not catch a class
// or field name Java does not have, a Long written where Java has a Map, or a long past 2^53 rounded on the way.

import { strict as assert } from 'node:assert';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { skipOrFail } from '@meshport/testkit';
import { SOFA_REGISTRY_CLASSES, SofaRegistryClient } from '../src/index';
import {
  decodeReceivedData,
  decodeRegisterResponse,
  encodePublisherRegister,
  encodeResult,
  encodeSubscriberRegister,
} from '../src/session-model';
import { SessionStandIn, datumVersion, decodePlain, decodeTyped, readLong } from './session-stand-in';

/** Debian's libhessian-java (scripts/bootstrap.sh installs it); another jar of Caucho's Hessian 4 can be named here. */
const HESSIAN_JAR = process.env.MESHPORT_HESSIAN_JAR ?? '/usr/share/java/hessian.jar';
/** The model classes and the probe, written for this test: sources, compiled at test time. */
const JAVA_SOURCES = path.resolve(__dirname, '../../test/java');
// Hessian 4.0.38 predates the module system: its serializer factory reaches into java.lang and java.util by
// reflection, as every SOFA app on a JDK 17 lets it.
const JVM_OPENS = ['--add-opens', 'java.base/java.lang=ALL-UNNAMED', '--add-opens', 'java.base/java.util=ALL-UNNAMED'];

const SERVICE = 'com.nodejs.test.TestService:1.0';
const DATA_ID = `${SERVICE}@DEFAULT`;
const URL1 =
  '198.18.0.8:12200?rpcVer=50400&serialization=hessian2&weight=50&p=1&v=4.0&_SERIALIZETYPE=hessian2&_WEIGHT=50&app_name=demo';
const DATA_BOX = 'com.alipay.sofa.registry.core.model.DataBox';

/** What the probe prints for one body. */
interface JavaReading {
  value?: Record<string, unknown>;
  /** `Class.field` the stream has and the class does not: Java drops them silently. */
  unknownFields?: string[];
  /** `Class.field` the class has and the stream does not: Java leaves them at their default silently. */
  missingFields?: string[];
  error?: string;
}

/** Why Java cannot run here, or undefined. */
function javaProblem(): string | undefined {
  for (const tool of ['java', 'javac']) {
    const run = spawnSync(tool, ['-version'], { encoding: 'utf8' });
    if (run.error || run.status !== 0)
      return `${tool} is not installed (a JDK 17 is: apt-get install openjdk-17-jdk-headless)`;
  }
  if (!existsSync(HESSIAN_JAR))
    return `no Caucho Hessian jar at ${HESSIAN_JAR} (apt-get install libhessian-java, or set MESHPORT_HESSIAN_JAR)`;
  return undefined;
}

function javaFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const full = path.join(dir, name);
    return statSync(full).isDirectory() ? javaFiles(full) : name.endsWith('.java') ? [full] : [];
  });
}

function runProbe(classes: string, mode: 'read' | 'write' | 'rewrite', input = ''): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('java', [
      ...JVM_OPENS,
      '-cp',
      `${classes}${path.delimiter}${HESSIAN_JAR}`,
      'meshport.HessianProbe',
      mode,
    ]);
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.on('error', reject);
    child.on('close', (code) =>
      code === 0 ? resolve(stdout) : reject(new Error(`HessianProbe ${mode} exited ${code}: ${stderr}`)),
    );
    child.stdin.end(input);
  });
}

/** The field names of the class definition a body opens with, in the order they were written. */
function fieldOrder(body: Buffer): string[] {
  return Object.keys(decodeTyped(body).$);
}

describe('SOFA Registry bodies as Java Hessian reads and writes them', () => {
  let classes: string;

  before(function () {
    const problem = javaProblem();
    if (problem) skipOrFail(this, `the Java Hessian test: ${problem}`);
    classes = mkdtempSync(path.join(tmpdir(), 'meshport-hessian-'));
    const javac = spawnSync('javac', ['-d', classes, '-cp', HESSIAN_JAR, ...javaFiles(JAVA_SOURCES)], {
      encoding: 'utf8',
    });
    assert.equal(javac.status, 0, `javac failed: ${javac.stderr}`);
  });

  after(() => {
    if (classes) rmSync(classes, { recursive: true, force: true });
  });

  async function javaReads(bodies: Buffer[]): Promise<JavaReading[]> {
    const out = await runProbe(classes, 'read', bodies.map((b) => b.toString('hex')).join('\n') + '\n');
    const readings = out
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as JavaReading);
    assert.equal(readings.length, bodies.length);
    for (const reading of readings) {
      assert.equal(reading.error, undefined, `Java could not read a body: ${reading.error}`);
      // A class name Java cannot load reads as a plain map, without complaint: only the missing `$class` shows it.
      assert.match(
        String(reading.value?.$class),
        /^com\.alipay\.sofa\.registry\.core\.model\.\w+$/,
        JSON.stringify(reading.value),
      );
      assert.deepEqual(reading.unknownFields, [], 'fields Java does not have');
      assert.deepEqual(reading.missingFields, [], 'fields left out that Java has');
    }
    return readings;
  }

  describe('with a client and the stand-in', () => {
    let standIn: SessionStandIn;
    let client: SofaRegistryClient;

    beforeEach(async () => {
      standIn = new SessionStandIn();
      await standIn.start();
      client = new SofaRegistryClient({
        servers: standIn.address,
        appName: 'demo',
        zone: 'GZ00A',
        instanceId: 'tenant-1',
        logger: { warn: () => {} },
      });
    });

    afterEach(async () => {
      await client.close();
      await standIn.stop();
    });

    it("reads the client's PublisherRegister, SubscriberRegister and Result into the model classes, every value as sent", async () => {
      await client.publish(SERVICE, URL1);
      await client.subscribe(SERVICE, () => {});
      await client.unpublish(SERVICE, URL1);
      const [pub, unpub] = standIn.received.filter((r) => r.className === SOFA_REGISTRY_CLASSES.publisherRegister);
      const [sub] = standIn.received.filter((r) => r.className === SOFA_REGISTRY_CLASSES.subscriberRegister);
      const result = standIn.pushAnswers[0];
      const [pubJava, unpubJava, subJava, resultJava] = await javaReads([
        pub.content,
        unpub.content,
        sub.content,
        result.content,
      ]);

      const base = {
        instanceId: 'tenant-1',
        zone: 'GZ00A',
        appName: 'demo',
        dataId: DATA_ID,
        group: 'SOFA',
        processId: null,
        clientId: null,
        dataInfoId: null,
        ip: '127.0.0.1',
        port: null,
        attributes: null,
      };
      const longOf = (fields: Record<string, unknown>, name: string) => ({ $long: readLong(fields[name]).toString() });
      assert.deepEqual(pubJava.value, {
        $class: SOFA_REGISTRY_CLASSES.publisherRegister,
        ...base,
        registId: pub.fields.registId,
        eventType: 'REGISTER',
        version: { $long: '1' },
        timestamp: longOf(pub.fields, 'timestamp'),
        dataList: [{ $class: DATA_BOX, data: URL1 }],
      });
      assert.deepEqual(unpubJava.value, {
        $class: SOFA_REGISTRY_CLASSES.publisherRegister,
        ...base,
        registId: pub.fields.registId,
        eventType: 'UNREGISTER',
        version: { $long: '2' },
        timestamp: longOf(unpub.fields, 'timestamp'),
        dataList: null,
      });
      assert.deepEqual(subJava.value, {
        $class: SOFA_REGISTRY_CLASSES.subscriberRegister,
        ...base,
        registId: sub.fields.registId,
        eventType: 'REGISTER',
        version: { $long: '1' },
        timestamp: longOf(sub.fields, 'timestamp'),
        scope: 'global',
        acceptEncoding: null,
        acceptMulti: false,
      });
      assert.deepEqual(resultJava.value, { $class: SOFA_REGISTRY_CLASSES.result, success: true, message: null });
    });

    it("reads the stand-in's RegisterResponse and ReceivedData into the model classes, versions past 2^53 exact", async () => {
      await client.subscribe(SERVICE, () => {});
      const version = datumVersion(Date.UTC(2028, 5, 1), 1);
      await standIn.injectPush({
        dataId: DATA_ID,
        version,
        data: { GZ00A: [URL1, 'ünïcødé:1?x=\u{1F600}'], GZ00B: [] },
      });
      standIn.failRegisters = { message: 'not allowed' };
      await client.publish(SERVICE, URL1);
      const responses = standIn.sent.filter((s) => s.className === SOFA_REGISTRY_CLASSES.registerResponse);
      const pushes = standIn.sent.filter((s) => s.className === SOFA_REGISTRY_CLASSES.receivedData);
      const [taken, refused, , injected] = await javaReads([
        responses[0].content,
        responses[1].content,
        pushes[0].content,
        pushes[1].content,
      ]);

      const registId = standIn.subscriberIds(DATA_ID)[0];
      assert.deepEqual(taken.value, {
        $class: SOFA_REGISTRY_CLASSES.registerResponse,
        success: true,
        registId,
        version: { $long: '1' },
        refused: false,
        message: null,
      });
      assert.equal(refused.value!.success, false);
      assert.equal(refused.value!.message, 'not allowed');
      assert.deepEqual(injected.value, {
        $class: SOFA_REGISTRY_CLASSES.receivedData,
        dataId: DATA_ID,
        group: 'SOFA',
        instanceId: 'tenant-1',
        segment: 'DefaultDataCenter',
        scope: 'global',
        subscriberRegistIds: [registId],
        data: {
          GZ00A: [
            { $class: DATA_BOX, data: URL1 },
            { $class: DATA_BOX, data: 'ünïcødé:1?x=\u{1F600}' },
          ],
          GZ00B: [],
        },
        version: { $long: version.toString() },
        localZone: 'GZ00A',
        dataCount: { GZ00A: { $int: 2 }, GZ00B: { $int: 0 } },
      });
    });
  });

  it("writes the client's bodies byte for byte as Java writes the same objects, long text and text outside the BMP too", async () => {
    // Past 0x8000 UTF-16 units a string goes in chunks; Java ends one a unit early rather than split a surrogate pair.
    const long = `${URL1}&x=${'y'.repeat(0x8000 - URL1.length - 4)}\u{1F600}\u{1F600}${'z'.repeat(40_000)}`;
    assert.ok(/[\ud800-\udbff]/.test(long[0x7fff]), 'a high surrogate at the end of the first chunk');
    const base = {
      instanceId: 'tenant-1',
      zone: 'GZ00A',
      appName: null,
      dataId: DATA_ID,
      group: 'SOFA',
      registId: 'r',
      ip: '198.18.0.8',
      eventType: 'REGISTER' as const,
      version: 70_000,
      timestamp: Date.UTC(2028, 5, 1),
    };
    const ours = [
      encodePublisherRegister({ ...base, dataList: [URL1, long, 'ünïcødé:1?x=\u{1F600}'] }),
      encodePublisherRegister({ ...base, eventType: 'UNREGISTER', version: 1, dataList: null }),
      encodeSubscriberRegister({ ...base, appName: 'demo', scope: 'zone' }),
      encodeResult({ success: false, message: 'could not take it in' }),
      encodeResult({ success: true, message: null }),
    ];
    const java = (await runProbe(classes, 'rewrite', ours.map((b) => b.toString('hex')).join('\n') + '\n'))
      .trim()
      .split('\n');
    assert.deepEqual(
      java,
      ours.map((b) => b.toString('hex')),
    );
  });

  it('decodes what Java writes, a ReceivedData past 2^53 and a RegisterResponse at the largest long, exactly', async () => {
    const [received, response] = (await runProbe(classes, 'write'))
      .trim()
      .split('\n')
      .map((hex) => Buffer.from(hex, 'hex'));
    assert.deepEqual(decodeReceivedData(received), {
      dataId: 'com.example.Echo:2.0:blue@DEFAULT',
      group: 'SOFA',
      instanceId: 'DEFAULT_INSTANCE_ID',
      segment: 'DefaultDataCenter',
      scope: 'global',
      subscriberRegistIds: ['r1', 'r2'],
      data: new Map([
        ['GZ00A', ['198.18.0.8:12200?p=1&v=4.0&_WEIGHT=100', '198.18.0.9:12200?p=1&v=4.0&_WEIGHT=\u00fc']],
        ['GZ00B', []],
      ]),
      version: 2n ** 53n + 1n,
      localZone: 'GZ00A',
    });
    assert.deepEqual(decodeRegisterResponse(response), {
      success: false,
      registId: 'r1',
      version: 2n ** 63n - 1n,
      refused: true,
      message: 'dataId is not allowed',
    });
  });

  it('writes every class with its fields in the order Java does', async () => {
    const java = (await runProbe(classes, 'write'))
      .trim()
      .split('\n')
      .map((hex) => fieldOrder(Buffer.from(hex, 'hex')));
    const base = {
      instanceId: 'i',
      zone: 'z',
      appName: null,
      dataId: DATA_ID,
      group: 'SOFA',
      registId: 'r',
      ip: null,
      eventType: 'REGISTER' as const,
      version: 1,
      timestamp: 1,
    };
    const ours = [
      encodePublisherRegister({ ...base, dataList: [URL1] }),
      encodeSubscriberRegister({ ...base, scope: 'global' }),
      encodeResult({ success: true, message: null }),
    ].map(fieldOrder);
    assert.deepEqual(ours, java.slice(2));
    // And the stand-in's, read from its last push and answer of a short session.
    const standIn = new SessionStandIn();
    await standIn.start();
    const client = new SofaRegistryClient({ servers: standIn.address, logger: { warn: () => {} } });
    try {
      await client.subscribe(SERVICE, () => {});
      const sent = (className: string) => standIn.sent.find((s) => s.className === className)!.content;
      assert.deepEqual(fieldOrder(sent(SOFA_REGISTRY_CLASSES.receivedData)), java[0]);
      assert.deepEqual(fieldOrder(sent(SOFA_REGISTRY_CLASSES.registerResponse)), java[1]);
      assert.equal(decodePlain(sent(SOFA_REGISTRY_CLASSES.registerResponse)).success, true);
    } finally {
      await client.close();
      await standIn.stop();
    }
  });
});
