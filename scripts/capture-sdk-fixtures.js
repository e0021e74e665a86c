#!/usr/bin/env node
// Captures real frames of sofa-rpc-node (Bolt, and Dubbo through dubbo-remoting) talking through the real
// `meshport tap --json --with-bytes`, and writes them to protocol/test/fixtures/captured-*.hex (one frame per file).
//
//   npm run build && node scripts/capture-sdk-fixtures.js      (from the repository root)
//
// The frames are what the SDKs put on the wire; their expected fields are in protocol/test/fixtures/expected.json.
'use strict';

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { client: sofaClient, server: sofaServer } = require('sofa-rpc-node');
const dubboProtocol = require('dubbo-remoting');

const root = path.resolve(__dirname, '..');
const fixtures = path.join(root, 'protocol/test/fixtures');
const quiet = { info() {}, warn() {}, error() {}, debug() {} };

async function startTap(upstreamPort) {
  const bin = path.join(root, 'packages/cli/bin/meshport.js');
  const child = spawn(process.execPath, [bin, 'tap', '--json', '--with-bytes', '--listen', '127.0.0.1:0', '--upstream', `127.0.0.1:${upstreamPort}`]);
  const lines = [];
  let partial = '';
  child.stdout.on('data', (c) => {
    const text = partial + c;
    const parts = text.split('\n');
    partial = parts.pop();
    for (const l of parts) lines.push(JSON.parse(l));
  });
  const port = await new Promise((resolve, reject) => {
    let err = '';
    child.stderr.on('data', (c) => {
      err += c;
      const m = /listening on [\d.]+:(\d+)/.exec(err);
      if (m) resolve(Number(m[1]));
    });
    child.once('exit', (code) => reject(new Error(`tap exited with ${code}: ${err}`)));
  });
  return { port, lines, stop: () => new Promise((r) => { child.once('exit', r); child.kill('SIGTERM'); }) };
}

async function capture(name, protocolOptions, calls) {
  const provider = new sofaServer.RpcServer({ logger: quiet, port: 0, ...protocolOptions });
  provider.addService({ interfaceName: 'com.example.EchoService', version: '1.0' }, {
    async echo(text) {
      return `echo: ${text}`;
    },
    async fail() {
      throw new Error('provider failed on purpose');
    },
  });
  await provider.start();
  const tap = await startTap(provider.publishPort);
  const rpc = new sofaClient.RpcClient({ logger: quiet, ...protocolOptions });
  try {
    const consumer = rpc.createConsumer({ interfaceName: 'com.example.EchoService', version: '1.0', serverHost: `127.0.0.1:${tap.port}` });
    await consumer.ready();
    await calls(consumer);
    await new Promise((r) => setTimeout(r, 200));
  } finally {
    await rpc.close();
    await tap.stop();
    await provider.close();
  }
  const frames = tap.lines.filter((l) => l.hex);
  const written = [];
  frames.forEach((f, i) => {
    const file = `captured-${name}-${String(i + 1).padStart(2, '0')}-${f.kind}.hex`;
    fs.writeFileSync(path.join(fixtures, file), f.hex + '\n');
    written.push(file);
  });
  return written;
}

async function main() {
  for (const f of fs.readdirSync(fixtures)) if (f.startsWith('captured-')) fs.unlinkSync(path.join(fixtures, f));
  const calls = async (consumer) => {
    await consumer.invoke('echo', ['hello from sofa-rpc-node'], { responseTimeout: 3000 });
    await consumer.invoke('fail', [], { responseTimeout: 3000 }).catch(() => {});
  };
  const files = [
    ...(await capture('sofa-bolt', {}, calls)),
    ...(await capture('sofa-dubbo', { protocol: dubboProtocol }, calls)),
  ];
  console.log(files.join('\n'));
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
