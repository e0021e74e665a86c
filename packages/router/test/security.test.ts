// Mutual TLS and authorization between two routers on loopback, as two sidecars: the consumer's outbound listener
// takes the app's plaintext calls and dials the provider's inbound listener over TLS 1.3, each side presenting the
// certificate makeTestPki issued it (by the openssl command, not by meshport). Every router comes from createRouter,
// so MESHPORT_ENGINE picks the engine under test.

import { strict as assert } from 'node:assert';
import { once } from 'node:events';
import net from 'node:net';
import { X509Certificate } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { BoltStatus, DubboStatus, encodeBoltHeartbeat, type FrameHeader } from '@meshport/protocol';
import { decodeBody } from '@meshport/protocol/body';
import { boltRequest, dubboCall, makeTestPki, type EchoProvider, type TestLeaf, type TestPki } from '@meshport/testkit';
import {
  MemoryRouteTable,
  defaultEngine,
  type Endpoint,
  type RouterHandle,
  type RouterOptions,
  type RouterSecurity,
} from '../src/index';
import { useRouterKit } from './helpers/kit';
import { type FrameClient, closedPort, until } from './helpers/peers';
import { TlsCaller, metric, securityOf, startRelay, type Relay } from './helpers/security-peers';

const SVC = 'com.example.EchoService:1.0';
const IFACE = 'org.example.Greeter';
const DSVC = `${IFACE}:2.0`;
const TD = 'cluster.local';
const PROVIDER = `spiffe://${TD}/ns/default/sa/echo-provider`;
const CONSUMER = `spiffe://${TD}/ns/default/sa/echo-consumer`;
const STRANGER = `spiffe://${TD}/ns/other/sa/stranger`;

type Answer = FrameClient['answers'][number];

const local = (port: number) => ({ host: '127.0.0.1', port });

function answerFor(client: { answers: Answer[] }, id: number | string): Answer | undefined {
  return client.answers.find((a) => String(a.header.requestId) === String(id));
}

/** Sends a request and waits for its answer. */
async function ask(client: FrameClient | TlsCaller, frame: Buffer, id: number | string, ms = 5000): Promise<Answer> {
  client.send(frame);
  await until(() => answerFor(client, id) !== undefined, `an answer for id ${id}`, ms);
  return answerFor(client, id)!;
}

/** The error message an error answer carries, read by decoding its body. */
function messageOf(a: Answer): string {
  return JSON.stringify(decodeBody(a.frame, a.header));
}

function bodyText(a: Answer): string {
  return a.frame.toString('utf8', a.header.bodyOffset, a.header.bodyOffset + a.header.bodyLength);
}

function isOk(header: FrameHeader): boolean {
  return header.status === (header.protocol === 'bolt' ? BoltStatus.SUCCESS : DubboStatus.OK);
}

const failures = (router: RouterHandle, direction: string, reason: string) =>
  metric(router, 'meshport_tls_handshake_failures_total', { direction, reason });
const handshakes = (router: RouterHandle, direction: string) =>
  metric(router, 'meshport_tls_handshakes_total', { direction });

describe(`mutual TLS and authorization between two sidecars (engine ${defaultEngine()})`, function () {
  this.timeout(30_000);
  const kit = useRouterKit();
  let pki: TestPki;
  let other: TestPki;
  let providerLeaf: TestLeaf;
  let consumerLeaf: TestLeaf;

  before(() => {
    pki = makeTestPki({ trustDomain: TD });
    other = makeTestPki({ trustDomain: TD, name: 'another CA' });
    providerLeaf = pki.issue(PROVIDER);
    consumerLeaf = pki.issue(CONSUMER);
  });
  after(() => {
    pki?.cleanup();
    other?.cleanup();
  });

  /** The provider's sidecar: its inbound listener in front of an echo app serving both services. */
  async function providerSidecar(security: RouterSecurity | undefined, options: Partial<RouterOptions> = {}) {
    const app = await kit.echo();
    const routes = new MemoryRouteTable().setInbound(SVC, local(app.port)).setInbound(DSVC, local(app.port));
    const router = await kit.router(routes, { inbound: { port: 0 }, outbound: false, security, ...options });
    assert.equal(router.engine, defaultEngine(), 'the engine under test, not a fallback');
    return { router, app, port: router.address('inbound').port };
  }

  /** The consumer's sidecar: calls to both services go to `port`, expected to be `identity`; `client` is its app. */
  async function consumerSidecar(
    security: RouterSecurity | undefined,
    port: number,
    identity: string | undefined,
    options: Partial<RouterOptions> = {},
  ) {
    const endpoint: Endpoint = { host: '127.0.0.1', port, ...(identity !== undefined ? { identity } : {}) };
    const routes = new MemoryRouteTable()
      .setOutbound(SVC, { endpoints: [endpoint] })
      .setOutbound(DSVC, { endpoints: [{ ...endpoint }] });
    const router = await kit.router(routes, { security, ...options });
    assert.equal(router.engine, defaultEngine(), 'the engine under test, not a fallback');
    const client = await kit.connect(router.address('outbound').port);
    return { router, client, routes, endpoint };
  }

  async function relayTo(port: number): Promise<Relay> {
    const relay = await startRelay(port);
    kit.onCleanup(() => relay.close());
    return relay;
  }

  async function tlsCaller(port: number, leaf: TestLeaf | undefined, ca = pki.caPem, maxVersion?: 'TLSv1.2') {
    const caller = await TlsCaller.connect(port, { leaf, ca, maxVersion });
    kit.onCleanup(() => caller.close());
    return caller;
  }

  /** A caller the provider closes: nothing it sent is answered or reaches the app. */
  async function assertRefused(caller: TlsCaller, app: EchoProvider, what: string): Promise<void> {
    caller.send(boltRequest(1, SVC, 'must not pass'));
    await until(() => caller.closed, `the provider to close ${what}`);
    assert.equal(caller.answers.length, 0, `${what}: answers`);
    assert.equal(app.seen.length, 0, `${what}: requests that reached the app`);
  }

  describe('calls over mutual TLS', () => {
    it('flow both protocols, and the wire between the sidecars carries TLS records only', async () => {
      const provider = await providerSidecar(securityOf(providerLeaf, pki.caPem, 'strict'));
      const relay = await relayTo(provider.port);
      const consumer = await consumerSidecar(securityOf(consumerLeaf, pki.caPem), relay.port, PROVIDER);

      for (let i = 1; i <= 5; i++) {
        const bolt = await ask(consumer.client, boltRequest(i, SVC, `bolt ${i}`), i);
        assert.equal(bolt.header.status, BoltStatus.SUCCESS);
        assert.equal(bodyText(bolt), `bolt ${i}`);
        const dubbo = await ask(consumer.client, dubboCall(100 + i, IFACE, '2.0', 'hello', `dubbo ${i}`), 100 + i);
        assert.equal(dubbo.header.status, DubboStatus.OK);
      }
      assert.equal(provider.app.seen.length, 10);

      // One connection per protocol, each a TLS handshake from its first byte, in both directions.
      assert.ok(relay.connections.length >= 1);
      for (const c of relay.connections) {
        assert.deepEqual([...c.up.subarray(0, 2)], [0x16, 0x03], `consumer's first bytes ${c.up.toString('hex')}`);
        assert.deepEqual([...c.down.subarray(0, 2)], [0x16, 0x03], `provider's first bytes ${c.down.toString('hex')}`);
        for (const magic of [0x01, 0x02, 0xda]) assert.notEqual(c.up[0], magic);
      }
      assert.ok((await handshakes(consumer.router, 'outbound')) >= 1);
      assert.ok((await handshakes(provider.router, 'inbound')) >= 1);
      assert.equal(await metric(provider.router, 'meshport_tls_handshake_failures_total'), 0);
      assert.equal(await metric(consumer.router, 'meshport_tls_handshake_failures_total'), 0);

      // `/routes` shows what the consumer expects of the endpoint.
      const clusters = await consumer.router.describeRoutes();
      const bolt = clusters.find((c) => c.listener === 'outbound' && c.name === SVC);
      assert.equal(bolt?.endpoints[0].identity, PROVIDER);
    });

    it('an endpoint without an identity stays plaintext; one whose identity changes gets new connections', async () => {
      const provider = await providerSidecar(securityOf(providerLeaf, pki.caPem, 'permissive'));
      const relay = await relayTo(provider.port);
      const consumer = await consumerSidecar(securityOf(consumerLeaf, pki.caPem), relay.port, undefined);

      const plain = await ask(consumer.client, boltRequest(1, SVC, 'plain'), 1);
      assert.equal(plain.header.status, BoltStatus.SUCCESS);
      assert.equal(relay.connections[0].up[0], 0x01, 'a Bolt frame, in plaintext');
      const routes = await consumer.router.describeRoutes();
      assert.equal(routes.find((c) => c.name === SVC)?.endpoints[0].identity, undefined);

      consumer.routes.setOutbound(SVC, { endpoints: [{ ...consumer.endpoint, identity: PROVIDER }] });
      const secured = await ask(consumer.client, boltRequest(2, SVC, 'secured'), 2);
      assert.equal(secured.header.status, BoltStatus.SUCCESS);
      assert.equal(relay.connections.length, 2, 'a new connection for the new identity');
      assert.equal(relay.connections[1].up[0], 0x16);

      // Another identity again: the TLS connection to the old one is not reused, and the new one is refused.
      consumer.routes.setOutbound(SVC, { endpoints: [{ ...consumer.endpoint, identity: STRANGER }] });
      const refused = await ask(consumer.client, boltRequest(3, SVC, 'refused'), 3);
      assert.equal(refused.header.status, BoltStatus.ERROR_COMM);
      assert.equal(relay.connections.length, 3);
      assert.ok((await failures(consumer.router, 'outbound', 'wrong-identity')) >= 1);
      assert.equal(provider.app.seen.length, 2);
    });
  });

  describe('handshakes refused, and counted by reason', () => {
    it('inbound: no client certificate, another CA, an expired one, no identity, TLS 1.2, a stalled handshake', async () => {
      const provider = await providerSidecar(securityOf(providerLeaf, pki.caPem, 'strict'), {
        connectTimeoutMs: 500,
      });
      const cases: [string, TestLeaf | undefined, string][] = [
        ['no-client-cert', undefined, 'a caller without a certificate'],
        ['untrusted', other.issue(CONSUMER), 'a certificate from another CA'],
        ['expired', pki.issue(CONSUMER, { expired: true }), 'an expired certificate'],
        ['no-identity', pki.issue(CONSUMER, { noIdentity: true }), 'a certificate without a URI SAN'],
      ];
      for (const [reason, leaf, what] of cases) {
        const caller = await tlsCaller(provider.port, leaf);
        await assertRefused(caller, provider.app, what);
        assert.equal(await failures(provider.router, 'inbound', reason), 1, `${what}: counted as ${reason}`);
      }

      const old = await tlsCaller(provider.port, consumerLeaf, pki.caPem, 'TLSv1.2');
      assert.equal(old.secured, false, 'TLS 1.2 is refused');
      assert.equal(await failures(provider.router, 'inbound', 'protocol'), 1);

      // A handshake begun and never finished is closed after the connect timeout.
      const stalled = net.connect({ host: '127.0.0.1', port: provider.port });
      kit.onCleanup(() => stalled.destroy());
      stalled.on('error', () => {});
      stalled.write(Buffer.from([0x16, 0x03, 0x01]));
      let closed = false;
      stalled.on('close', () => (closed = true));
      await until(() => closed, 'the stalled handshake to be closed', 5000);
      await until(async () => (await failures(provider.router, 'inbound', 'timeout')) === 1, 'a timeout counted');

      // A good caller still gets through.
      const good = await tlsCaller(provider.port, consumerLeaf);
      assert.equal(good.secured, true);
      const ok = await ask(good, boltRequest(9, SVC, 'fine'), 9);
      assert.equal(ok.header.status, BoltStatus.SUCCESS);
      assert.equal(await handshakes(provider.router, 'inbound'), 1);
    });

    it('outbound: a provider with another identity, from another CA, or expired is never sent a call', async () => {
      const cases: [string, TestLeaf, string][] = [
        ['wrong-identity', pki.issue(STRANGER), 'the registry names another identity'],
        ['untrusted', other.issue(PROVIDER), "the provider's CA is not trusted"],
        ['expired', pki.issue(PROVIDER, { expired: true }), "the provider's certificate has expired"],
      ];
      for (const [reason, leaf, what] of cases) {
        // The provider trusts both CAs (it is the consumer that must refuse).
        const provider = await providerSidecar(securityOf(leaf, pki.caPem + other.caPem, 'strict'));
        const consumer = await consumerSidecar(securityOf(consumerLeaf, pki.caPem), provider.port, PROVIDER);
        const a = await ask(consumer.client, boltRequest(1, SVC, 'x'), 1);
        assert.equal(a.header.status, BoltStatus.ERROR_COMM, `${what}: the call fails as a connect failure`);
        const d = await ask(consumer.client, dubboCall(2, IFACE, '2.0', 'hello', 'x'), 2);
        assert.equal(d.header.status, DubboStatus.CHANNEL_INACTIVE);
        assert.ok((await failures(consumer.router, 'outbound', reason)) >= 1, `${what}: counted as ${reason}`);
        assert.equal(await handshakes(consumer.router, 'outbound'), 0);
        assert.equal(provider.app.seen.length, 0, `${what}: nothing reached the app`);
      }
    });

    it('outbound: a provider that never finishes the handshake times out; a refused connect is no handshake', async () => {
      const silent = net.createServer((socket) => socket.on('error', () => {}));
      silent.listen(0, '127.0.0.1');
      await once(silent, 'listening');
      kit.onCleanup(() => silent.close());
      const port = (silent.address() as net.AddressInfo).port;
      const consumer = await consumerSidecar(securityOf(consumerLeaf, pki.caPem), port, PROVIDER, {
        connectTimeoutMs: 300,
      });
      const a = await ask(consumer.client, boltRequest(1, SVC, 'x'), 1);
      assert.equal(a.header.status, BoltStatus.ERROR_COMM);
      assert.ok((await failures(consumer.router, 'outbound', 'timeout')) >= 1);

      const refused = await closedPort();
      const other = await consumerSidecar(securityOf(consumerLeaf, pki.caPem), refused, PROVIDER);
      const b = await ask(other.client, boltRequest(2, SVC, 'x'), 2);
      assert.equal(b.header.status, BoltStatus.ERROR_COMM);
      assert.equal(await metric(other.router, 'meshport_tls_handshake_failures_total'), 0);
    });

    it('a consumer with an expired certificate, or from another CA, is refused by the provider', async () => {
      const cases: [string, TestLeaf][] = [
        ['expired', pki.issue(CONSUMER, { expired: true })],
        ['untrusted', other.issue(CONSUMER)],
      ];
      for (const [reason, leaf] of cases) {
        const provider = await providerSidecar(securityOf(providerLeaf, pki.caPem, 'strict'));
        const consumer = await consumerSidecar(securityOf(leaf, pki.caPem), provider.port, PROVIDER);
        const a = await ask(consumer.client, boltRequest(1, SVC, 'x'), 1);
        assert.ok(!isOk(a.header), `${reason}: the call fails (status ${a.header.status})`);
        await until(async () => (await failures(provider.router, 'inbound', reason)) >= 1, `${reason} counted`);
        assert.equal(provider.app.seen.length, 0);
      }
    });
  });

  describe('a TLS caller is a caller like any other', () => {
    it('its frames are read from the decrypted stream: a stalled frame closes it, a bad one is answered', async () => {
      const provider = await providerSidecar(securityOf(providerLeaf, pki.caPem, 'strict'), { frameTimeoutMs: 300 });
      const stalled = await tlsCaller(provider.port, consumerLeaf);
      stalled.send(boltRequest(1, SVC, 'half a frame').subarray(0, 30));
      await until(() => stalled.closed, 'the stalled TLS caller to be closed');
      const bad = await tlsCaller(provider.port, consumerLeaf);
      const frame = boltRequest(2, SVC, 'x');
      frame.writeUInt16BE(0x7777, 2); // no such command code
      bad.send(frame);
      await until(() => bad.closed, 'the TLS caller with a bad frame to be closed');
      assert.equal(bad.answers.length, 1);
      assert.equal(bad.answers[0].header.status, BoltStatus.CODEC_EXCEPTION);
      assert.equal(await metric(provider.router, 'meshport_bad_frames_total', { code: 'frame-timeout' }), 1);
      assert.equal(await metric(provider.router, 'meshport_bad_frames_total'), 2);
      assert.equal(provider.app.seen.length, 0);
    });

    it('a connection adopted on the inbound listener (transparent capture) is told apart by its first byte too', async () => {
      const provider = await providerSidecar(securityOf(providerLeaf, pki.caPem, 'strict'));
      // A capture listener of its own: it reads the first bytes, puts them back and hands the socket over.
      const capture = net.createServer((socket) => {
        socket.once('data', (head: Buffer) => {
          socket.pause();
          socket.unshift(head);
          provider.router.adopt('inbound', socket);
          socket.resume();
        });
      });
      capture.listen(0, '127.0.0.1');
      await once(capture, 'listening');
      kit.onCleanup(() => capture.close());
      const port = (capture.address() as net.AddressInfo).port;
      const caller = await tlsCaller(port, consumerLeaf);
      const ok = await ask(caller, boltRequest(1, SVC, 'captured'), 1);
      assert.equal(ok.header.status, BoltStatus.SUCCESS);
      assert.equal(bodyText(ok), 'captured');
      const plain = await kit.connect(port);
      plain.send(boltRequest(2, SVC, 'plain'));
      await until(() => plain.closed, 'the captured plaintext caller to be closed (strict)');
      assert.equal(await failures(provider.router, 'inbound', 'plaintext-refused'), 1);
      assert.equal(await handshakes(provider.router, 'inbound'), 1);
    });

    it('a drain answers the calls it has in flight, then closes it', async () => {
      const provider = await providerSidecar(securityOf(providerLeaf, pki.caPem, 'strict'));
      provider.app.behave = () => ({ delayMs: 300 });
      const caller = await tlsCaller(provider.port, consumerLeaf);
      caller.send(boltRequest(1, SVC, 'slow'));
      await until(() => provider.app.seen.length === 1, 'the call to reach the app');
      const drained = provider.router.drain(5000);
      await until(() => answerFor(caller, 1) !== undefined, 'the answer during the drain');
      assert.equal(answerFor(caller, 1)!.header.status, BoltStatus.SUCCESS);
      await drained;
      await until(() => caller.closed, 'the drained caller to be closed');
    });
  });

  describe('modes', () => {
    it('permissive accepts plaintext and TLS on the same port', async () => {
      const provider = await providerSidecar(securityOf(providerLeaf, pki.caPem, 'permissive'));
      const plain = await kit.connect(provider.port);
      const a = await ask(plain, boltRequest(1, SVC, 'plain'), 1);
      assert.equal(a.header.status, BoltStatus.SUCCESS);
      const d = await ask(plain, dubboCall(2, IFACE, '2.0', 'hello', 'plain'), 2);
      assert.equal(d.header.status, DubboStatus.OK);
      const consumer = await consumerSidecar(securityOf(consumerLeaf, pki.caPem), provider.port, PROVIDER);
      const t = await ask(consumer.client, boltRequest(3, SVC, 'tls'), 3);
      assert.equal(t.header.status, BoltStatus.SUCCESS);
      assert.equal(await handshakes(provider.router, 'inbound'), 1);
      assert.equal(await metric(provider.router, 'meshport_tls_handshake_failures_total'), 0);
    });

    it('strict closes a plaintext caller at its first byte, and counts it', async () => {
      const provider = await providerSidecar(securityOf(providerLeaf, pki.caPem, 'strict'));
      const plain = await kit.connect(provider.port);
      plain.send(boltRequest(1, SVC, 'plain'));
      await until(() => plain.closed, 'the plaintext caller to be closed');
      assert.equal(plain.answers.length, 0);
      assert.equal(provider.app.seen.length, 0);
      assert.equal(await failures(provider.router, 'inbound', 'plaintext-refused'), 1);

      // A consumer without TLS material dials plaintext, even to an endpoint with an identity: refused too.
      const consumer = await consumerSidecar(undefined, provider.port, PROVIDER);
      const a = await ask(consumer.client, boltRequest(2, SVC, 'x'), 2);
      assert.ok(!isOk(a.header));
      assert.equal(await failures(provider.router, 'inbound', 'plaintext-refused'), 2);
    });

    it('the outbound listener stays plaintext, whatever the mode', async () => {
      const provider = await providerSidecar(securityOf(providerLeaf, pki.caPem, 'strict'));
      const consumer = await consumerSidecar(securityOf(consumerLeaf, pki.caPem, 'strict'), provider.port, PROVIDER);
      const a = await ask(consumer.client, boltRequest(1, SVC, 'from the app, in plaintext'), 1);
      assert.equal(a.header.status, BoltStatus.SUCCESS);
    });
  });

  describe('authorization', () => {
    it('a caller the policy does not allow gets the protocol error answer, counted, and the connection stays open', async () => {
      const policy = {
        services: {
          [SVC]: { allow: [STRANGER] },
          [DSVC]: { allow: [CONSUMER], methods: { secret: [`spiffe://${TD}/ns/admin/*`] } },
        },
      };
      const provider = await providerSidecar(securityOf(providerLeaf, pki.caPem, 'strict', policy));
      const consumer = await consumerSidecar(securityOf(consumerLeaf, pki.caPem), provider.port, PROVIDER);

      const bolt = await ask(consumer.client, boltRequest(1, SVC, 'x'), 1);
      assert.equal(bolt.header.status, BoltStatus.SERVER_EXCEPTION);
      assert.match(messageOf(bolt), new RegExp(`meshport: ${CONSUMER} may not call ${SVC.replace('.', '\\.')}`));

      const secret = await ask(consumer.client, dubboCall(2, IFACE, '2.0', 'secret', 'x'), 2);
      assert.equal(secret.header.status, DubboStatus.BAD_REQUEST);
      assert.ok(
        messageOf(secret).includes(`meshport: ${CONSUMER} may not call ${DSVC}#secret`),
        `message: ${messageOf(secret)}`,
      );

      // Allowed on the same connections: the provider saw the consumer's identity and lets it call hello.
      const hello = await ask(consumer.client, dubboCall(3, IFACE, '2.0', 'hello', 'allowed'), 3);
      assert.equal(hello.header.status, DubboStatus.OK);
      assert.equal(provider.app.seen.length, 1);
      assert.equal(await metric(provider.router, 'meshport_calls_denied_total', { service: SVC }), 1);
      assert.equal(await metric(provider.router, 'meshport_calls_denied_total', { service: DSVC }), 1);
      assert.equal(await handshakes(provider.router, 'inbound'), 2, 'one connection per protocol, none closed');
    });

    it('heartbeats are never denied; a plaintext caller is named as one', async () => {
      const provider = await providerSidecar(securityOf(providerLeaf, pki.caPem, 'permissive', { default: 'deny' }));
      const caller = await tlsCaller(provider.port, consumerLeaf);
      const beat = await ask(caller, encodeBoltHeartbeat(7), 7);
      assert.equal(beat.header.kind, 'heartbeat-ack');
      const denied = await ask(caller, boltRequest(8, SVC, 'x'), 8);
      assert.equal(denied.header.status, BoltStatus.SERVER_EXCEPTION);
      assert.ok(messageOf(denied).includes(`meshport: ${CONSUMER} may not call ${SVC}`));
      const again = await ask(caller, encodeBoltHeartbeat(9), 9);
      assert.equal(again.header.kind, 'heartbeat-ack');
      assert.equal(caller.closed, false);

      const plain = await kit.connect(provider.port);
      const p = await ask(plain, dubboCall(10, IFACE, '2.0', 'hello', 'x'), 10);
      assert.equal(p.header.status, DubboStatus.BAD_REQUEST);
      assert.ok(messageOf(p).includes(`meshport: a plaintext caller may not call ${DSVC}#hello`), messageOf(p));
      assert.equal(provider.app.seen.length, 0);
      assert.equal(await metric(provider.router, 'meshport_calls_denied_total'), 2);
    });

    it('setSecurity replaces the policy for the next request on an open connection', async () => {
      const open = securityOf(providerLeaf, pki.caPem, 'strict');
      const provider = await providerSidecar(open);
      const consumer = await consumerSidecar(securityOf(consumerLeaf, pki.caPem), provider.port, PROVIDER);
      assert.equal((await ask(consumer.client, boltRequest(1, SVC, 'x'), 1)).header.status, BoltStatus.SUCCESS);
      provider.router.setSecurity({ ...open, policy: { ...open.policy, services: { [SVC]: { allow: [STRANGER] } } } });
      const denied = await ask(consumer.client, boltRequest(2, SVC, 'x'), 2);
      assert.equal(denied.header.status, BoltStatus.SERVER_EXCEPTION);
      provider.router.setSecurity(open);
      assert.equal((await ask(consumer.client, boltRequest(3, SVC, 'x'), 3)).header.status, BoltStatus.SUCCESS);
      assert.equal(await handshakes(provider.router, 'inbound'), 1, 'the same connection throughout');
    });
  });

  describe('rotation', () => {
    it('setSecurity during a stream of calls loses none; new connections present the new certificates', async () => {
      const next = makeTestPki({ trustDomain: TD, name: 'the next CA' });
      kit.onCleanup(() => next.cleanup());
      const bothCas = pki.caPem + next.caPem;
      const provider = await providerSidecar(securityOf(providerLeaf, bothCas, 'strict'));
      const relay = await relayTo(provider.port);
      const consumer = await consumerSidecar(securityOf(consumerLeaf, bothCas), relay.port, PROVIDER);
      const newProvider = next.issue(PROVIDER);
      const newConsumer = next.issue(CONSUMER);

      // A stream of calls, 8 in flight at a time; both sides rotate while it runs.
      const total = 400;
      let sent = 0;
      const stream = async (lane: number) => {
        for (;;) {
          const id = ++sent;
          if (id > total) return;
          const frame =
            id % 2 === 0 ? boltRequest(id, SVC, `call ${id}`) : dubboCall(id, IFACE, '2.0', 'hello', `call ${id}`);
          const a = await ask(consumer.client, frame, id);
          assert.ok(isOk(a.header), `call ${id} (lane ${lane}): status ${a.header.status}`);
        }
      };
      const rotate = async () => {
        await until(() => sent >= total / 3, 'a third of the stream');
        consumer.router.setSecurity(securityOf(newConsumer, bothCas));
        provider.router.setSecurity(securityOf(newProvider, bothCas, 'strict'));
      };
      await Promise.all([...Array.from({ length: 8 }, (_, lane) => stream(lane)), rotate()]);
      assert.equal(provider.app.served, total, 'every call served once');
      assert.equal(consumer.client.answers.length, total);

      // New connections: the provider presents its new certificate...
      const probe = await tlsCaller(provider.port, newConsumer, bothCas);
      assert.equal(probe.secured, true);
      assert.equal(probe.serverCert?.fingerprint256, new X509Certificate(newProvider.certPem).fingerprint256);
      // ...and with the old CA dropped on both sides, only the new certificates can get a call through.
      consumer.router.setSecurity(securityOf(newConsumer, next.caPem));
      provider.router.setSecurity(securityOf(newProvider, next.caPem, 'strict'));
      relay.cutAll();
      await sleep(200); // the consumer sees its old connections close (no call in flight on them)
      const before = relay.connections.length;
      for (let i = 1; i <= 4; i++) {
        const id = total + i;
        const frame = i % 2 === 0 ? boltRequest(id, SVC, 'after') : dubboCall(id, IFACE, '2.0', 'hello', 'after');
        const a = await ask(consumer.client, frame, id);
        assert.ok(isOk(a.header), `call ${id} after the old CA went: status ${a.header.status}`);
      }
      assert.ok(relay.connections.length > before, 'new connections were made');
      assert.equal(await metric(provider.router, 'meshport_tls_handshake_failures_total'), 0);
      assert.equal(await metric(consumer.router, 'meshport_tls_handshake_failures_total'), 0);
    });
  });
});
