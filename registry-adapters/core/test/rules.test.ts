// compileRules and endpointsFor on the rule shapes Dubbo 2.7 and Java sofa-rpc keep in ZooKeeper, checked against
// what their client code does with them.

import { strict as assert } from 'node:assert';
import {
  compileRules,
  emptyRuleUrls,
  endpointsFor,
  weightAt,
  type CompiledRoute,
  type RuleConsumer,
  type RuleUrls,
} from '../src/index';

const IFACE = 'org.apache.dubbo.demo.DemoService';
const NOW = 1_700_000_000_000;

function dubboProvider(host: string, extra = ''): string {
  return (
    `dubbo://${host}:20880/${IFACE}?anyhost=true&application=demo-provider&dubbo=2.0.2&interface=${IFACE}` +
    `&methods=findUser,findOrder,save&side=provider${extra}`
  );
}
const P1 = dubboProvider('10.0.0.1');
const P2 = dubboProvider('10.0.0.2');
const P3 = dubboProvider('10.0.0.3');
const CONSUMER: RuleConsumer = { host: '10.1.1.1', application: 'demo-consumer', interface: IFACE };

function dubbo(
  rules: Partial<RuleUrls>,
  options: { providers?: string[]; consumer?: RuleConsumer; nowMs?: number } = {},
): CompiledRoute {
  return compileRules({
    dialect: 'dubbo',
    providers: options.providers ?? [P1, P2, P3],
    rules: { ...emptyRuleUrls(), ...rules },
    consumer: options.consumer ?? CONSUMER,
    nowMs: options.nowMs ?? NOW,
  });
}

const override = (address: string, params: string) =>
  `override://${address}/${IFACE}?category=configurators&dynamic=false&${params}`;
const condition = (rule: string, params = '') =>
  `condition://0.0.0.0/${IFACE}?category=routers&dynamic=false&rule=${encodeURIComponent(rule)}${params}`;
const hostsFor = (route: CompiledRoute, method: string) => endpointsFor(route, method).map((e) => e.host);
const weights = (route: CompiledRoute) => route.providers.map((p) => p.weight);
const ALL = ['10.0.0.1', '10.0.0.2', '10.0.0.3'];

describe('governance rules: Dubbo configurators', () => {
  it('an override naming one provider by host:port shifts only its weight', () => {
    const rule = override('10.0.0.2:20880', 'weight=200');
    const route = dubbo({ configurators: [rule] });
    assert.deepEqual(weights(route), [100, 200, 100]);
    assert.deepEqual(route.providers[1].appliedRules, [rule]);
    assert.deepEqual(route.providers[1].ruleParams, { weight: '200' });
    assert.deepEqual(route.inForce, [rule]);
    assert.deepEqual(
      endpointsFor(route, 'findUser').map((e) => [e.host, e.weight]),
      [
        ['10.0.0.1', 100],
        ['10.0.0.2', 200],
        ['10.0.0.3', 100],
      ],
    );
  });

  it('an override without a port names a consumer, not a provider (Dubbo reads it as the consumer host)', () => {
    const rule = override('10.0.0.2', 'weight=200');
    const route = dubbo({ configurators: [rule] });
    assert.deepEqual(weights(route), [100, 100, 100]);
    assert.match(route.notApplied.find((n) => n.rule === rule)!.reason, /names a consumer/);
    // The same rule naming this consumer's host reaches every provider it calls.
    const mine = override('10.1.1.1', 'weight=20&timeout=5000');
    const route2 = dubbo({ configurators: [mine] });
    assert.deepEqual(weights(route2), [20, 20, 20]);
    assert.deepEqual(
      endpointsFor(route2, 'save').map((e) => e.timeoutMs),
      [5000, 5000, 5000],
    );
  });

  it('0.0.0.0 applies to every provider, and a specific host wins over it whatever the order', () => {
    const any = override('0.0.0.0', 'weight=50');
    const one = override('10.0.0.3:20880', 'weight=300');
    assert.deepEqual(weights(dubbo({ configurators: [any] })), [50, 50, 50]);
    assert.deepEqual(weights(dubbo({ configurators: [one, any] })), [50, 50, 300]);
    assert.deepEqual(weights(dubbo({ configurators: [any, one] })), [50, 50, 300]);
  });

  it('among rules for the same host, the higher priority is applied last and wins', () => {
    const low = override('0.0.0.0', 'weight=10&priority=1');
    const high = override('0.0.0.0', 'weight=20&priority=2');
    assert.deepEqual(weights(dubbo({ configurators: [high, low] })), [20, 20, 20]);
    assert.deepEqual(dubbo({ configurators: [high, low] }).providers[0].appliedRules, [low, high]);
  });

  it('disabled=true excludes a provider; so do disabled/enabled=false on its own URL', () => {
    const rule = override('10.0.0.3:20880', 'disabled=true');
    const route = dubbo({ configurators: [rule] });
    assert.equal(route.providers[2].disabled, true);
    assert.match(route.providers[2].disabledBy!, /disabled=true set by override/);
    assert.equal(route.providers[2].weight, 0);
    assert.deepEqual(hostsFor(route, 'findUser'), ['10.0.0.1', '10.0.0.2']);

    const own = dubbo(
      {},
      { providers: [P1, dubboProvider('10.0.0.2', '&disabled=true'), dubboProvider('10.0.0.3', '&enabled=false')] },
    );
    assert.deepEqual(
      own.providers.map((p) => p.disabled),
      [false, true, true],
    );
    assert.deepEqual(hostsFor(own, 'findUser'), ['10.0.0.1']);
  });

  it('an override with enabled=false is off', () => {
    const rule = override('0.0.0.0', 'weight=1&enabled=false');
    const route = dubbo({ configurators: [rule] });
    assert.deepEqual(weights(route), [100, 100, 100]);
    assert.deepEqual(route.inForce, []);
    assert.deepEqual(route.notApplied, [{ rule, reason: 'enabled=false' }]);
  });

  it('application, side, version and group restrict who an override is for', () => {
    const forUs = override('0.0.0.0', 'application=demo-consumer&weight=7');
    const forOthers = override('0.0.0.0', 'application=billing&weight=8');
    const providerSide = override('0.0.0.0', 'side=provider&weight=9');
    const route = dubbo({ configurators: [forUs, forOthers, providerSide] });
    assert.deepEqual(weights(route), [7, 7, 7]);
    assert.deepEqual(route.inForce, [forUs]);
    assert.match(route.notApplied.find((n) => n.rule === forOthers)!.reason, /application billing/);
    assert.match(route.notApplied.find((n) => n.rule === providerSide)!.reason, /side=provider/);

    // A consumer of version 1.0.0 reads only rules naming that version (UrlUtils.isMatch).
    const versioned: RuleConsumer = { ...CONSUMER, version: '1.0.0' };
    const unversioned = override('0.0.0.0', 'weight=5');
    const matching = override('0.0.0.0', 'weight=6&version=1.0.0');
    const r2 = dubbo({ configurators: [unversioned, matching] }, { consumer: versioned });
    assert.deepEqual(weights(r2), [6, 6, 6]);
    assert.match(r2.notApplied.find((n) => n.rule === unversioned)!.reason, /version \(none\)/);
  });

  it('an empty:// configurator clears every configurator', () => {
    const rule = override('0.0.0.0', 'weight=5');
    const route = dubbo({ configurators: [rule, `empty://0.0.0.0/${IFACE}?category=configurators`] });
    assert.deepEqual(weights(route), [100, 100, 100]);
  });

  it('absent:// sets only what the provider URL lacks', () => {
    const route = dubbo(
      { configurators: [`absent://0.0.0.0/${IFACE}?category=configurators&weight=5&loadbalance=leastactive`] },
      { providers: [dubboProvider('10.0.0.1', '&weight=100'), P2] },
    );
    assert.deepEqual(weights(route), [100, 5]);
    assert.equal(route.providers[0].ruleParams.loadbalance, 'leastactive');
  });

  it('a method-level weight from a rule applies to that method only', () => {
    const route = dubbo({ configurators: [override('10.0.0.2:20880', 'findUser.weight=0')] });
    assert.deepEqual(hostsFor(route, 'findUser'), ['10.0.0.1', '10.0.0.3']);
    assert.deepEqual(hostsFor(route, 'save'), ALL);
    assert.equal(weightAt(route.providers[1], NOW, 'findUser'), 0);
  });

  it('a provider URL of another category is not a provider', () => {
    const route = dubbo({}, { providers: [P1, dubboProvider('10.0.0.9', '&category=configurators')] });
    assert.deepEqual(
      route.providers.map((p) => p.disabled),
      [false, true],
    );
  });
});

describe('governance rules: Dubbo condition routers', () => {
  it('method = find* => host = 10.0.0.1 sends find* there and every other method everywhere', () => {
    const rule = condition('method = find* => host = 10.0.0.1');
    const route = dubbo({ routers: [rule] });
    assert.deepEqual(route.routers, [
      {
        rule,
        priority: 0,
        force: false,
        methods: [{ matches: ['find*'], mismatches: [] }],
        allowed: [0],
        blacklist: false,
      },
    ]);
    assert.deepEqual(hostsFor(route, 'findUser'), ['10.0.0.1']);
    assert.deepEqual(hostsFor(route, 'findOrder'), ['10.0.0.1']);
    assert.deepEqual(hostsFor(route, 'save'), ALL);
    assert.deepEqual(route.inForce, [rule]);
  });

  it('host = <consumer ip> => host != x holds for that consumer only', () => {
    const rule = condition('host = 10.1.1.1 => host != 10.0.0.2');
    assert.deepEqual(hostsFor(dubbo({ routers: [rule] }), 'save'), ['10.0.0.1', '10.0.0.3']);
    const other = dubbo({ routers: [rule] }, { consumer: { ...CONSUMER, host: '10.1.1.2' } });
    assert.deepEqual(hostsFor(other, 'save'), ALL);
    assert.deepEqual(other.routers, []);
    assert.match(other.notApplied[0].reason, /consumer conditions/);
  });

  it('consumer. and provider. prefixes, several values, != and application work as in Dubbo', () => {
    const rule = condition(
      'consumer.application = demo-consumer,other & method != save => provider.host = 10.0.0.2,10.0.0.3',
    );
    const route = dubbo({ routers: [rule] });
    assert.deepEqual(hostsFor(route, 'findUser'), ['10.0.0.2', '10.0.0.3']);
    assert.deepEqual(hostsFor(route, 'save'), ALL);
  });

  it('when nothing matches: force=false keeps the list, force=true empties it', () => {
    const lax = condition('=> host = 10.9.9.9');
    const strict = condition('=> host = 10.9.9.9', '&force=true');
    assert.deepEqual(hostsFor(dubbo({ routers: [lax] }), 'save'), ALL);
    assert.deepEqual(hostsFor(dubbo({ routers: [strict] }), 'save'), []);
  });

  it('routers run in ascending priority, each on what the previous one kept', () => {
    const toOne = (priority: number) => condition('=> host = 10.0.0.1', `&priority=${priority}`);
    const toThree = (priority: number) => condition('=> host = 10.0.0.3', `&priority=${priority}`);
    // The second finds none of its hosts among what the first kept and, not forced, leaves it.
    assert.deepEqual(hostsFor(dubbo({ routers: [toThree(2), toOne(1)] }), 'save'), ['10.0.0.1']);
    assert.deepEqual(hostsFor(dubbo({ routers: [toThree(1), toOne(2)] }), 'save'), ['10.0.0.3']);
    const narrowing = dubbo({
      routers: [
        condition('=> host = 10.0.0.2,10.0.0.3', '&priority=5'),
        condition('=> host = 10.0.0.1,10.0.0.2', '&priority=-1'),
      ],
    });
    assert.deepEqual(
      narrowing.routers.map((r) => r.priority),
      [-1, 5],
    );
    assert.deepEqual(hostsFor(narrowing, 'save'), ['10.0.0.2']);
  });

  it('a blacklist (nothing after =>) gives no provider, whatever force says', () => {
    const all = dubbo({ routers: [condition('host = 10.1.1.1 =>')] });
    assert.equal(all.routers[0].blacklist, true);
    assert.deepEqual(hostsFor(all, 'findUser'), []);
    const one = dubbo({ routers: [condition('method = save => false')] });
    assert.deepEqual(hostsFor(one, 'save'), []);
    assert.deepEqual(hostsFor(one, 'findUser'), ALL);
  });

  it('a router with enabled=false is off; a disabled provider is never allowed', () => {
    const off = condition('=> host = 10.0.0.1', '&force=true&enabled=false');
    assert.deepEqual(hostsFor(dubbo({ routers: [off] }), 'save'), ALL);
    const route = dubbo({
      routers: [condition('=> host = 10.0.0.2,10.0.0.3')],
      configurators: [override('10.0.0.3:20880', 'disabled=true')],
    });
    assert.deepEqual(route.routers[0].allowed, [1]);
    assert.deepEqual(hostsFor(route, 'save'), ['10.0.0.2']);
  });

  it('provider conditions see the provider URL merged with the consumer parameters, as Dubbo does', () => {
    // application is the consumer's after the merge; the provider's own is remote.application.
    const route = dubbo({
      routers: [condition('=> application = demo-consumer & remote.application = demo-provider', '&force=true')],
    });
    assert.deepEqual(hostsFor(route, 'save'), ALL);
  });
});

describe('governance rules: what cannot be parsed is reported and changes nothing', () => {
  const bad: [string, string][] = [
    ['a value before any key', condition('= 10.0.0.1 => host = 10.0.0.1', '&force=true')],
    ["a ',' with no value before it", condition('method = a => host = , 10.0.0.1', '&force=true')],
    [
      'a rule that is not valid URL encoding',
      `condition://0.0.0.0/${IFACE}?category=routers&force=true&rule=host%3D%ZZ`,
    ],
    ['a router without a rule', `condition://0.0.0.0/${IFACE}?category=routers&force=true`],
    ['consumer conditions on call arguments', condition('arguments[0] = 1 => host = 10.0.0.1', '&force=true')],
    ['a script router', `script://0.0.0.0/${IFACE}?category=routers&type=javascript&rule=x`],
    ['an override with a non-integer priority', override('0.0.0.0', 'weight=1&priority=high')],
    ['an unknown configurator type', `weird://0.0.0.0/${IFACE}?category=configurators&weight=1`],
    ['text that is no URL', 'not a url'],
  ];
  for (const [what, rule] of bad) {
    it(`ignores ${what}`, () => {
      const route = dubbo({ routers: [rule] });
      const clean = dubbo({});
      assert.equal(route.problems.length, 1, JSON.stringify(route));
      assert.equal(route.problems[0].rule, rule);
      assert.deepEqual(route.providers, clean.providers);
      assert.deepEqual(route.routers, []);
      assert.deepEqual(route.inForce, []);
      for (const method of ['save', 'findUser', ''])
        assert.deepEqual(endpointsFor(route, method), endpointsFor(clean, method));
    });
  }

  it('a bad rule beside good ones leaves the good ones in force', () => {
    const good = condition('=> host = 10.0.0.1');
    const route = dubbo({ routers: [bad[0][1], good] });
    assert.deepEqual(hostsFor(route, 'save'), ['10.0.0.1']);
    assert.deepEqual(route.inForce, [good]);
  });
});

describe('governance rules: warm-up', () => {
  const T = NOW - 1_000;
  const sofa = `bolt://10.0.0.1:12200?startTime=${T}&weight=100&warmupTime=60000&warmupWeight=10&interface=com.x.Svc&version=1.0`;
  const plain = 'bolt://10.0.0.2:12200?weight=100&interface=com.x.Svc&version=1.0';
  const compileSofa = (nowMs: number, rules: Partial<RuleUrls> = {}, consumer: RuleConsumer = { host: '10.1.1.1' }) =>
    compileRules({
      dialect: 'sofa',
      providers: [sofa, plain],
      rules: { ...emptyRuleUrls(), ...rules },
      consumer,
      nowMs,
    });

  it('sofa-rpc: warmupWeight until startTime + warmupTime has passed, then the weight', () => {
    const during = compileSofa(NOW);
    assert.deepEqual(weights(during), [10, 100]);
    assert.deepEqual(during.providers[0].warmup, { curve: 'sofa', startMs: T, endMs: T + 60_000, weight: 10 });
    assert.equal(during.recompileAtMs, T + 60_001);
    assert.deepEqual(weights(compileSofa(T + 60_000)), [10, 100], 'still warming up at the end time itself');
    const after = compileSofa(T + 60_001);
    assert.deepEqual(weights(after), [100, 100]);
    assert.equal(after.providers[0].warmup, undefined);
    assert.equal(after.recompileAtMs, undefined);
    assert.deepEqual(
      endpointsFor(during, 'x', T + 60_001).map((e) => e.weight),
      [100, 100],
    );
  });

  it('sofa-rpc: no warm-up unless warmupTime, warmupWeight and startTime are all there', () => {
    const route = compileRules({
      dialect: 'sofa',
      providers: [`bolt://10.0.0.1:12200?startTime=${T}&weight=100&warmupWeight=10`],
      rules: emptyRuleUrls(),
      consumer: { host: '10.1.1.1' },
      nowMs: NOW,
    });
    assert.deepEqual(weights(route), [100]);
  });

  it('Dubbo: the weight ramps from the provider timestamp over `warmup` (10 minutes by default)', () => {
    const fresh = dubboProvider('10.0.0.1', `&timestamp=${NOW - 60_000}`);
    const linear = dubbo({}, { providers: [fresh, P2] });
    assert.deepEqual(weights(linear), [10, 100]);
    assert.equal(linear.recompileAtMs, NOW - 60_000 + 600_000);
    const quadratic = compileRules({
      dialect: 'dubbo',
      providers: [fresh],
      rules: emptyRuleUrls(),
      consumer: CONSUMER,
      nowMs: NOW,
      options: { dubboWarmupCurve: 'quadratic' },
    });
    assert.deepEqual(weights(quadratic), [1]);
    assert.deepEqual(weights(dubbo({}, { providers: [fresh], nowMs: NOW + 540_000 })), [100]);
    assert.deepEqual(
      weights(dubbo({}, { providers: [dubboProvider('10.0.0.1', `&timestamp=${NOW + 5_000}`)] })),
      [1],
      'a clock ahead of ours',
    );
    assert.deepEqual(
      weights(
        dubbo({}, { providers: [dubboProvider('10.0.0.1', `&timestamp=${NOW - 30_000}&warmup=60000&weight=200`)] }),
      ),
      [100],
    );
  });
});

describe('governance rules: Java sofa-rpc configs and overrides', () => {
  const providers = [
    'bolt://10.0.0.1:12200?weight=100&interface=com.x.Svc',
    'bolt://10.0.0.2:12200?weight=50&interface=com.x.Svc',
  ];
  const compile = (rules: Partial<RuleUrls>) =>
    compileRules({
      dialect: 'sofa',
      providers,
      rules: { ...emptyRuleUrls(), ...rules },
      consumer: { host: '10.1.1.1' },
      nowMs: NOW,
    });

  it('an override for this consumer IP sets its timeout and load balancer; weight is not an override key', () => {
    const mine = 'bolt://10.1.1.1?timeout=5000&loadBalancer=roundRobin&weight=1';
    const theirs = 'bolt://10.1.1.2?timeout=1';
    const route = compile({ overrides: [mine, theirs] });
    assert.deepEqual(route.consumerOverrides, { timeout: '5000', loadBalancer: 'roundRobin' });
    assert.equal(route.loadBalancer, 'roundRobin');
    assert.deepEqual(
      endpointsFor(route, 'x').map((e) => [e.host, e.weight, e.timeoutMs]),
      [
        ['10.0.0.1', 100, 5000],
        ['10.0.0.2', 50, 5000],
      ],
    );
    assert.deepEqual(route.inForce, [mine]);
    assert.match(route.notApplied.find((n) => n.rule === theirs)!.reason, /another consumer/);
  });

  it('an override the SDK cannot apply is a problem and changes nothing', () => {
    const route = compile({ overrides: ['bolt://10.1.1.1?timeout=soon&loadBalancer=random'] });
    assert.equal(route.problems.length, 1);
    assert.deepEqual(route.consumerOverrides, {});
    assert.equal(route.providers[0].timeoutMs, undefined);
  });

  it('a provider with enabled other than true is disabled, as sofa-rpc-node skips it', () => {
    const route = compileRules({
      dialect: 'sofa',
      providers: [...providers, 'bolt://10.0.0.3:12200?enabled=false&interface=com.x.Svc'],
      rules: emptyRuleUrls(),
      consumer: { host: '10.1.1.1' },
      nowMs: NOW,
    });
    assert.deepEqual(
      route.providers.map((p) => p.disabled),
      [false, false, true],
    );
    assert.deepEqual(
      endpointsFor(route, 'x').map((e) => e.host),
      ['10.0.0.1', '10.0.0.2'],
    );
  });

  it('interface-level configs are parsed and reported, and change nothing, as in Java sofa-rpc', () => {
    const route = compile({ configs: { timeout: '200', 'invoke.blacklist': '["x"]' } });
    assert.deepEqual(weights(route), [100, 50]);
    assert.deepEqual(
      route.notApplied.map((n) => n.rule),
      ['timeout=200', 'invoke.blacklist=["x"]'],
    );
    assert.equal(route.providers[0].timeoutMs, undefined);
  });
});

describe('governance rules: the compiled route', () => {
  it('is plain JSON', () => {
    const route = dubbo(
      {
        configurators: [override('10.0.0.2:20880', 'weight=200&findUser.timeout=900')],
        routers: [condition('method = find* => host = 10.0.0.1,10.0.0.2'), condition('bad = ')],
      },
      { providers: [P1, P2, dubboProvider('10.0.0.3', `&timestamp=${NOW - 1000}`)] },
    );
    assert.deepEqual(JSON.parse(JSON.stringify(route)), route);
    assert.deepEqual(route.providers[1].methods, { findUser: { timeoutMs: 900 } });
    assert.deepEqual(
      endpointsFor(route, 'findUser').map((e) => [e.host, e.timeoutMs]),
      [
        ['10.0.0.1', undefined],
        ['10.0.0.2', 900],
      ],
    );
  });

  it('method names that are Object.prototype members are just method names', () => {
    const route = dubbo({});
    assert.deepEqual(hostsFor(route, 'toString'), ALL);
    assert.deepEqual(hostsFor(route, '__proto__'), ALL);
  });
});
