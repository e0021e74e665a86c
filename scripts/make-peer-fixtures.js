#!/usr/bin/env node
// Writes frames made by the npm peers (sofa-bolt-node 2.0.1, dubbo-remoting 2.1.4 and its hessian.js 2.11.0) into
// protocol/test/fixtures/*.hex: one frame per file, lowercase hex, trailing newline. Deterministic: no clock, no
// random ids, and error objects carry a fixed stack so no file path of this machine lands in a frame.
//
//   node scripts/make-peer-fixtures.js          (from the repository root)
//
// protocol/test/fixtures.test.ts requires this module and checks that the files still equal what the peers make.
// What each file holds is documented in protocol/test/fixtures/README.md and checked from expected.json.
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const bolt = require('sofa-bolt-node/lib/protocol');
const dubbo = require('dubbo-remoting/lib/protocol');
const DubboResponse = require('dubbo-remoting/lib/protocol/response');
const dubboSerialization = require('dubbo-remoting/lib/serialize');
const dubboUtils = require('dubbo-remoting/lib/utils');

const V1 = { protocolType: 'bolt', codecType: 'hessian2' };
const V2_CRC = { protocolType: 'bolt2', boltVersion: 2, crcEnable: true, codecType: 'hessian2' };

/** An Error whose encoding does not depend on where this script runs (sofa-bolt-node serializes err.stack). */
function fixedError(message) {
  const err = new Error(message);
  err.stack = `Error: ${message}`;
  return err;
}

/**
 * A Dubbo request with a null service version, as Java Dubbo sends it when no version is configured.
 * dubbo-remoting's Request.encode always writes '' there, so this uses dubbo-remoting's own hessian2 output and
 * header layout with the version written as a hessian null ('N').
 */
function dubboRequestWithNullVersion(id, servicePath, methodName, args, attachments) {
  const out = dubboSerialization.getSerializationByName('hessian2').serialize();
  const bytes = out.bytes;
  bytes.put(0xda);
  bytes.put(0xbb);
  bytes.put(0x80 | 0x40 | out.contentTypeId); // request, two-way, hessian2
  bytes.put(0);
  bytes.putLong(id);
  bytes.skip(4);
  out.writeUTF('2.0.2');
  out.writeUTF(servicePath);
  out.writeObject(null);
  out.writeUTF(methodName);
  out.writeUTF(dubboUtils.getJavaArgsDesc(args));
  for (const arg of args) out.writeObject(arg);
  out.writeObject(attachments);
  bytes._bytes.writeInt32BE(bytes.position() - 16, 12);
  return Buffer.from(out.get());
}

function dubboErrorResponse(id, status, message) {
  const res = new DubboResponse(id);
  res.status = status;
  res.errorMsg = message;
  return Buffer.from(res.encode({}));
}

/** name -> frame, in a fixed order. */
function makePeerFixtures() {
  const frames = {
    'bolt-v2-crc-request.hex': bolt.requestEncode(
      1001,
      { serverSignature: 'com.example.EchoService:1.0', methodName: 'echo', args: ['hello'], timeout: 3000 },
      V2_CRC,
    ),
    'bolt-v1-error-response.hex': bolt.responseEncode(
      1002,
      { isError: true, status: 0x02, appResponse: fixedError('provider failed: 服务异常') },
      V1,
    ),
    'bolt-oneway.hex': bolt.requestEncode(
      1003,
      { serverSignature: 'com.example.LogService:1.0', methodName: 'log', args: ['fire and forget'], timeout: 3000, oneway: true },
      V1,
    ),
    'bolt-unicode-service.hex': bolt.requestEncode(
      1004,
      { serverSignature: 'com.例子.回声服务😀Service:1.0', methodName: '回显😀', args: ['你好🌏'], timeout: 5000 },
      V1,
    ),
    'bolt-v2-crc-heartbeat.hex': bolt.heartbeatEncode(1005, {}, V2_CRC),
    'bolt-v2-crc-heartbeat-ack.hex': bolt.heartbeatAckEncode(1005, V2_CRC),
    'bolt-v2-crc-no-processor-response.hex': bolt.responseEncode(
      1006,
      { isError: true, status: 0x06, appResponse: fixedError('no processor for com.example.Missing:1.0') },
      V2_CRC,
    ),
    'dubbo-null-version-request.hex': dubboRequestWithNullVersion(
      2001,
      'org.apache.dubbo.demo.DemoService',
      'sayHello',
      ['world'],
      { path: 'org.apache.dubbo.demo.DemoService', interface: 'org.apache.dubbo.demo.DemoService' },
    ),
    'dubbo-heartbeat.hex': dubbo.heartbeatEncode(2002, {}, {}),
    'dubbo-heartbeat-ack.hex': dubbo.heartbeatAckEncode(2002, {}),
    'dubbo-unicode-request.hex': dubbo.requestEncode(
      2003,
      { serverSignature: 'org.例子.问候服务😀:2.0.0', methodName: '问候😀', args: ['世界'], group: 'g1' },
      {},
    ),
    'dubbo-large-id-request.hex': dubbo.requestEncode(
      '9007199254740993',
      { serverSignature: 'org.apache.dubbo.demo.DemoService:1.0.0', methodName: 'sayHello', args: ['big id'] },
      {},
    ),
    'dubbo-long-service-request.hex': dubbo.requestEncode(
      2004,
      { serverSignature: `org.example.${'Long'.repeat(300)}Service:1.0.0`, methodName: 'ping', args: [] },
      {},
    ),
    'dubbo-service-not-found-response.hex': dubboErrorResponse(2005, 60, 'Not found exported service: org.example.Missing:1.0.0 找不到'),
  };
  for (const name of Object.keys(frames)) frames[name] = Buffer.from(frames[name]);
  return frames;
}

module.exports = { makePeerFixtures };

if (require.main === module) {
  const dir = path.resolve(__dirname, '../protocol/test/fixtures');
  fs.mkdirSync(dir, { recursive: true });
  for (const [name, frame] of Object.entries(makePeerFixtures())) {
    fs.writeFileSync(path.join(dir, name), `${frame.toString('hex')}\n`);
    process.stdout.write(`${name} ${frame.length} bytes\n`);
  }
}
