// Provider URLs and ZooKeeper node names, on the real shapes from PROTOCOLS.md: sofa-rpc-node, SOFA Registry data,
// Apache Dubbo, Java's URLEncoder and IPv6.

import { strict as assert } from 'node:assert';
import {
  RegistryError,
  decodeNodeName,
  dubboServiceKey,
  dubboServiceKeyOf,
  encodeNodeName,
  formatProviderUrl,
  getParam,
  parseProviderUrl,
  providerEndpoint,
  providerUrlText,
  providerWeight,
  rewriteEndpoint,
  sofaServiceKey,
  sofaServiceKeyOf,
  interfaceOfServiceKey,
  routeKeyOf,
  providersPerIdentity,
  withParam,
  withServiceKey,
} from '../src/index';

/** The sofa-rpc-node provider URL of PROTOCOLS.md, with its `..` filled in. */
const SOFA_NODE_URL =
  'bolt://127.0.0.1:12200?startTime=1700000000000&pid=4242&uniqueId=&dynamic=true&appName=demo&timeout=3000' +
  '&serialization=hessian2&weight=100&accepts=100000&language=nodejs&rpcVer=50400&protocol=' +
  '&interface=com.nodejs.test.TestService&version=1.0&group=SOFA';
const SOFA_NODE_PARAM_NAMES = [
  'startTime',
  'pid',
  'uniqueId',
  'dynamic',
  'appName',
  'timeout',
  'serialization',
  'weight',
  'accepts',
  'language',
  'rpcVer',
  'protocol',
  'interface',
  'version',
  'group',
];
/** SOFA Registry publishes data without a scheme. */
const SOFA_REGISTRY_DATA =
  '10.0.0.8:12200?rpcVer=50400&serialization=hessian2&weight=50&p=1&v=4.0&_SERIALIZETYPE=hessian2&_WEIGHT=50&app_name=demo';
const DUBBO_URL =
  'dubbo://10.0.0.9:20880/org.apache.dubbo.demo.DemoService?anyhost=true&application=demo-provider&deprecated=false' +
  '&dubbo=2.0.2&dynamic=true&generic=false&interface=org.apache.dubbo.demo.DemoService&methods=sayHello%2CsayHelloAsync' +
  '&pid=4243&release=2.7.23&revision=2.0&side=provider&timestamp=1700000000001&version=2.0';

function assertCode(fn: () => unknown, code: string): void {
  assert.throws(fn, (e: unknown) => e instanceof RegistryError && e.code === code);
}

describe('provider URLs', () => {
  it('parses the sofa-rpc-node URL with every parameter in order and formats it back byte for byte', () => {
    const url = parseProviderUrl(SOFA_NODE_URL);
    assert.equal(url.scheme, 'bolt');
    assert.equal(url.host, '127.0.0.1');
    assert.equal(url.port, 12200);
    assert.equal(url.path, '');
    assert.deepEqual(
      url.params.map((p) => p.name),
      SOFA_NODE_PARAM_NAMES,
    );
    assert.deepEqual(
      url.params.find((p) => p.name === 'uniqueId'),
      { name: 'uniqueId', value: '' },
    );
    assert.equal(getParam(url, 'uniqueId'), '');
    assert.equal(getParam(url, 'protocol'), '');
    assert.equal(getParam(url, 'serialization'), 'hessian2');
    assert.equal(getParam(url, 'nonesuch'), undefined);
    assert.equal(formatProviderUrl(url), SOFA_NODE_URL);
    assert.equal(providerWeight(url), 100);
    assert.equal(sofaServiceKeyOf(url), 'com.nodejs.test.TestService:1.0');
  });

  it('parses a Dubbo URL with its path, keeps %2C encoded in the text and decodes it on read', () => {
    const url = parseProviderUrl(DUBBO_URL);
    assert.equal(url.scheme, 'dubbo');
    assert.equal(url.path, '/org.apache.dubbo.demo.DemoService');
    assert.equal(getParam(url, 'methods'), 'sayHello,sayHelloAsync');
    assert.equal(formatProviderUrl(url), DUBBO_URL);
    assert.equal(dubboServiceKeyOf(url), 'org.apache.dubbo.demo.DemoService:2.0');
    assert.equal(providerWeight(url), 100, 'no weight parameter means the default');
    // No interface parameter and no version: the path names the service, and the key has no version.
    assert.equal(
      dubboServiceKeyOf(parseProviderUrl('dubbo://10.0.0.9:20880/org.example.Greeter?side=provider')),
      'org.example.Greeter',
    );
  });

  it('parses SOFA Registry data without a scheme and reads its weight', () => {
    const url = parseProviderUrl(SOFA_REGISTRY_DATA);
    assert.equal(url.scheme, undefined);
    assert.equal(url.host, '10.0.0.8');
    assert.equal(providerWeight(url), 50);
    assert.equal(formatProviderUrl(url), SOFA_REGISTRY_DATA);
    assert.equal(providerWeight(parseProviderUrl('10.0.0.8:12200?_WEIGHT=7')), 7, '_WEIGHT when weight is absent');
    assert.deepEqual(providerEndpoint(url), { host: '10.0.0.8', port: 12200, weight: 50 });
  });

  it('falls back to weight 100 on a weight that is not a non-negative integer, and keeps an explicit 0', () => {
    assert.equal(providerWeight(parseProviderUrl('bolt://h:1?weight=abc')), 100);
    assert.equal(providerWeight(parseProviderUrl('bolt://h:1?weight=-5')), 100);
    assert.equal(providerWeight(parseProviderUrl('bolt://h:1?weight=0')), 0);
  });

  it('handles IPv6 hosts in brackets, in and out', () => {
    const text = 'bolt://[fd00::7]:12200?weight=30&interface=com.example.Echo';
    const url = parseProviderUrl(text);
    assert.equal(url.host, 'fd00::7');
    assert.equal(url.port, 12200);
    assert.equal(formatProviderUrl(url), text);
    assert.equal(parseProviderUrl('[::1]:12200?v=4.0').host, '::1');
    assert.equal(
      rewriteEndpoint(text, { host: '10.0.0.1', port: 12220 }),
      'bolt://10.0.0.1:12220?weight=30&interface=com.example.Echo',
    );
    assert.equal(
      rewriteEndpoint(SOFA_REGISTRY_DATA, { host: '::1', port: 12220 }),
      SOFA_REGISTRY_DATA.replace('10.0.0.8:12200', '[::1]:12220'),
    );
    assert.equal(
      rewriteEndpoint(SOFA_REGISTRY_DATA, { host: '[::1]', port: 12220 }),
      SOFA_REGISTRY_DATA.replace('10.0.0.8:12200', '[::1]:12220'),
    );
  });

  it('rewriteEndpoint changes host:port and nothing else, for all three shapes', () => {
    assert.equal(
      rewriteEndpoint(SOFA_NODE_URL, { host: '10.1.2.3', port: 15001 }),
      SOFA_NODE_URL.replace('127.0.0.1:12200', '10.1.2.3:15001'),
    );
    assert.equal(
      rewriteEndpoint(DUBBO_URL, { host: '127.0.0.1', port: 15000 }),
      DUBBO_URL.replace('10.0.0.9:20880', '127.0.0.1:15000'),
    );
    const parsed = parseProviderUrl(DUBBO_URL);
    const moved = rewriteEndpoint(parsed, { host: '127.0.0.1', port: 15000 });
    assert.deepEqual({ ...moved, host: parsed.host, port: parsed.port }, parsed);
    assert.equal(parsed.port, 20880, 'the input is not mutated');
    assertCode(() => rewriteEndpoint(parsed, { host: 'h', port: 70000 }), 'MESHPORT_REGISTRY_BAD_URL');
  });

  it('keeps bare parameters apart from empty ones', () => {
    const url = parseProviderUrl('bolt://h:1?anyhost&uniqueId=&a=1');
    assert.deepEqual(url.params, [
      { name: 'anyhost', value: undefined },
      { name: 'uniqueId', value: '' },
      { name: 'a', value: '1' },
    ]);
    assert.equal(formatProviderUrl(url), 'bolt://h:1?anyhost&uniqueId=&a=1');
    assert.equal(providerUrlText('bolt://h:1?a=1&&b=2'), 'bolt://h:1?a=1&b=2', 'empty segments carry nothing');
  });

  it('providerUrlText returns a text already in its spelling as it is, and formats every other one', () => {
    const texts = [
      'bolt://10.0.0.5:12200?startTime=1&uniqueId=&dynamic=true&weight=100&interface=com.example.Echo&version=1.0',
      'dubbo://10.0.0.5:20880/com.example.Echo?anyhost=true&a=b=c&group=g',
      '10.0.0.5:12200?_WEIGHT=100',
      'bolt://h:0',
      'bolt://h:65535/',
      'bolt://h:1?a=1&&b=2',
      'bolt://h:1?a=1&',
      'bolt://h:1?&a=1',
      'bolt://h:1?',
      'bolt://h:01220?a=1',
      'bolt://[::1]:12200?a=1',
      'bolt://[h]:12200',
      'h:12200/p/q?x',
    ];
    for (const text of texts) assert.equal(providerUrlText(text), formatProviderUrl(parseProviderUrl(text)), text);
    const canonical = texts[0]!;
    assert.equal(providerUrlText(canonical), canonical);
    assertCode(() => providerUrlText('bolt://h:65536'), 'MESHPORT_REGISTRY_BAD_URL');
    assertCode(() => providerUrlText('bolt://h'), 'MESHPORT_REGISTRY_BAD_URL');
  });

  it('withParam replaces in place or appends, encoding the value', () => {
    const url = parseProviderUrl('bolt://h:1?a=1&weight=100&b=2');
    assert.equal(formatProviderUrl(withParam(url, 'weight', '5')), 'bolt://h:1?a=1&weight=5&b=2');
    assert.equal(formatProviderUrl(withParam(url, 'tag', 'x y&z')), 'bolt://h:1?a=1&weight=100&b=2&tag=x%20y%26z');
  });

  it('rejects what is not a provider URL with MESHPORT_REGISTRY_BAD_URL', () => {
    for (const bad of [
      '',
      'bolt://',
      'bolt://10.0.0.1',
      '10.0.0.1',
      'bolt://10.0.0.1:99999',
      'bolt://10.0.0.1:x',
      'bolt://[::1:12200',
    ]) {
      assertCode(() => parseProviderUrl(bad), 'MESHPORT_REGISTRY_BAD_URL');
    }
  });
});

describe('service keys', () => {
  it('builds SOFA keys interface:version[:uniqueId] with version 1.0 by default', () => {
    assert.equal(sofaServiceKey('com.example.Echo'), 'com.example.Echo:1.0');
    assert.equal(sofaServiceKey('com.example.Echo', '', ''), 'com.example.Echo:1.0');
    assert.equal(sofaServiceKey('com.example.Echo', '2.0', 'blue'), 'com.example.Echo:2.0:blue');
    assert.equal(
      sofaServiceKeyOf(parseProviderUrl('bolt://h:1?interface=com.example.Echo&uniqueId=blue')),
      'com.example.Echo:1.0:blue',
    );
  });

  it('builds Dubbo keys group/interface:version, each part left out when empty', () => {
    assert.equal(dubboServiceKey('org.example.Greeter', '2.0'), 'org.example.Greeter:2.0');
    assert.equal(dubboServiceKey('org.example.Greeter'), 'org.example.Greeter');
    assert.equal(dubboServiceKey('org.example.Greeter', '2.0', 'g1'), 'g1/org.example.Greeter:2.0');
    assert.equal(dubboServiceKey('org.example.Greeter', null, 'g1'), 'g1/org.example.Greeter');
    assert.equal(
      dubboServiceKeyOf(parseProviderUrl('dubbo://h:1/org.example.Greeter?group=g2&version=1.0')),
      'g2/org.example.Greeter:1.0',
    );
    // Older providers write their defaults as default.group / default.version.
    assert.equal(
      dubboServiceKeyOf(parseProviderUrl('dubbo://h:1/org.example.Greeter?default.group=g3&default.version=3.0')),
      'g3/org.example.Greeter:3.0',
    );
    assertCode(() => dubboServiceKeyOf(parseProviderUrl('dubbo://h:1?side=provider')), 'MESHPORT_REGISTRY_BAD_URL');
    for (const key of [
      'org.example.Greeter',
      'org.example.Greeter:1.0',
      'g1/org.example.Greeter:1.0',
      'org.example.Greeter:1.0:blue',
    ]) {
      assert.equal(interfaceOfServiceKey(key), 'org.example.Greeter');
    }
  });

  it('gives a URL filed under a service key that service when it names none, and leaves one that does alone', () => {
    assert.equal(
      routeKeyOf(withServiceKey(parseProviderUrl('10.0.0.7:12200?p=1'), 'com.example.Echo:1.0:blue')),
      'com.example.Echo:1.0:blue',
    );
    assert.equal(
      routeKeyOf(withServiceKey(parseProviderUrl('bolt://10.0.0.7:12200?weight=5'), 'com.example.Echo:2.0')),
      'com.example.Echo:2.0',
    );
    assert.equal(
      routeKeyOf(
        withServiceKey(parseProviderUrl('dubbo://10.0.0.7:20880?side=provider'), 'g1/org.example.Greeter:1.0'),
      ),
      'g1/org.example.Greeter:1.0',
    );
    const named = parseProviderUrl('bolt://10.0.0.7:12200?interface=com.example.Other&version=3.0');
    assert.equal(withServiceKey(named, 'com.example.Echo:1.0'), named);
  });

  it('hands out one URL per identity, an enabled provider standing for its identity', () => {
    const urls = [
      'bolt://a:1?interface=com.example.Echo&version=1.0&enabled=false',
      'bolt://b:1?interface=com.example.Echo&version=1.0',
      'bolt://c:1?interface=com.example.Echo&version=2.0',
      'dubbo://d:1/com.example.Echo?version=1.0&group=g1',
      'bolt://e:1?weight=1',
    ].map(parseProviderUrl);
    assert.deepEqual(
      providersPerIdentity(urls).map((u) => u.host),
      ['b', 'c', 'd'],
    );
  });
});

describe('ZooKeeper node names', () => {
  it('encodes the sofa-rpc-node URL as sofa-rpc-node does (encodeURIComponent) and decodes it back', () => {
    const name = encodeNodeName(SOFA_NODE_URL, 'js');
    assert.equal(name, encodeURIComponent(SOFA_NODE_URL));
    assert.ok(
      name.startsWith('bolt%3A%2F%2F127.0.0.1%3A12200%3FstartTime%3D1700000000000%26pid%3D4242%26uniqueId%3D%26'),
    );
    assert.equal(decodeNodeName(name), SOFA_NODE_URL);
  });

  it("encodes as Java URLEncoder does: space as +, !~'() escaped, .-*_ kept, upper-case hex over UTF-8", () => {
    const url = "bolt://10.0.0.1:12200?appName=my app&note=(a)!~'*._-&city=Zürich";
    const java = 'bolt%3A%2F%2F10.0.0.1%3A12200%3FappName%3Dmy+app%26note%3D%28a%29%21%7E%27*._-%26city%3DZ%C3%BCrich';
    const js = "bolt%3A%2F%2F10.0.0.1%3A12200%3FappName%3Dmy%20app%26note%3D(a)!~'*._-%26city%3DZ%C3%BCrich";
    assert.equal(encodeNodeName(url, 'java'), java);
    assert.equal(encodeNodeName(url, 'js'), js);
    assert.equal(decodeNodeName(java), url);
    assert.equal(decodeNodeName(js), url);
  });

  it("decodes a node name Java wrote for a Dubbo URL, keeping the URL's own %2C (written as %252C)", () => {
    const java =
      'dubbo%3A%2F%2F10.0.0.9%3A20880%2Forg.apache.dubbo.demo.DemoService%3Fanyhost%3Dtrue%26application%3Ddemo-provider' +
      '%26deprecated%3Dfalse%26dubbo%3D2.0.2%26dynamic%3Dtrue%26generic%3Dfalse%26interface%3Dorg.apache.dubbo.demo.DemoService' +
      '%26methods%3DsayHello%252CsayHelloAsync%26pid%3D4243%26release%3D2.7.23%26revision%3D2.0%26side%3Dprovider' +
      '%26timestamp%3D1700000000001%26version%3D2.0';
    assert.equal(decodeNodeName(java), DUBBO_URL);
    assert.equal(encodeNodeName(DUBBO_URL, 'java'), java);
  });

  it('round-trips every printable ASCII character and some non-ASCII in both styles', () => {
    let all = '';
    for (let c = 0x20; c < 0x7f; c++) all += String.fromCharCode(c);
    all += 'é中😀';
    for (const style of ['js', 'java'] as const) {
      const name = encodeNodeName(all, style);
      assert.ok(!name.includes('/'), `${style}: a node name never holds '/'`);
      assert.equal(decodeNodeName(name), all, style);
    }
    assert.match(encodeNodeName(all, 'java'), /^[A-Za-z0-9.\-*_+%]*$/);
  });

  it('rejects broken percent-encoding with MESHPORT_REGISTRY_BAD_NODE_NAME', () => {
    assertCode(() => decodeNodeName('bolt%3A%2F%2Fh%3A1%3Fa%3D%E0%A4%A'), 'MESHPORT_REGISTRY_BAD_NODE_NAME');
    assertCode(() => decodeNodeName('100%'), 'MESHPORT_REGISTRY_BAD_NODE_NAME');
  });
});
