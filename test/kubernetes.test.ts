// docs/kubernetes/meshport-pod.yaml against the real CLI and config parser: every flag the recipe gives `meshport
// hijack` is accepted, the sidecar reads the ConfigMap where it is mounted, and the recipe's ports and uids agree
// with that config.

import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';
import { parseConfig, type SidecarConfig } from '@meshport/sidecar';

const ROOT = path.resolve(__dirname, '../..');
const RECIPE = path.join(ROOT, 'docs/kubernetes/meshport-pod.yaml');
const BIN = path.join(ROOT, 'packages/cli/bin/meshport.js');
/** `meshport hijack --uid` when not given. */
const DEFAULT_UID = 1337;

interface Probe {
  exec?: { command: string[] };
  httpGet?: { path: string; port: number | string; host?: string };
}
interface Container {
  name: string;
  command?: string[];
  args?: string[];
  env?: { name: string; value?: string }[];
  volumeMounts?: { name: string; mountPath: string; subPath?: string }[];
  securityContext?: { runAsUser?: number; privileged?: boolean; capabilities?: { add?: string[] } };
  readinessProbe?: Probe;
  livenessProbe?: Probe;
  restartPolicy?: string;
}
interface PodSpec {
  securityContext?: { runAsUser?: number };
  volumes?: { name: string; configMap?: { name: string; items?: { key: string; path: string }[] } }[];
  initContainers?: Container[];
  containers: Container[];
}
interface Manifest {
  kind: string;
  metadata: { name: string };
  spec?: PodSpec;
  data?: Record<string, string>;
}

const argv = (c: Container) => [...(c.command ?? []), ...(c.args ?? [])];

/** `--flag value` pairs of an argv (booleans map to true). */
function flags(args: string[]): Map<string, string | true> {
  const out = new Map<string, string | true>();
  for (let i = 0; i < args.length; i++) {
    if (!args[i]!.startsWith('--')) continue;
    const next = args[i + 1];
    if (next === undefined || next.startsWith('--')) out.set(args[i]!, true);
    else {
      out.set(args[i]!, next);
      i++;
    }
  }
  return out;
}

/** The port a probe checks on the admin listener, and the admin page it asks for. */
function probeTarget(probe: Probe | undefined): { port: number; page: string } {
  assert.ok(probe, 'a probe is set');
  if (probe.httpGet) return { port: Number(probe.httpGet.port), page: probe.httpGet.path };
  const text = (probe.exec?.command ?? []).join(' ');
  const m = /https?:\/\/(?:127\.0\.0\.1|localhost|\[::1\]):(\d+)(\/[A-Za-z]*)/.exec(text);
  assert.ok(m, `the probe asks the admin port for a page: ${text}`);
  return { port: Number(m[1]), page: m[2]! };
}

describe('docs/kubernetes/meshport-pod.yaml', function () {
  this.timeout(30_000);
  const docs = parseAllDocuments(readFileSync(RECIPE, 'utf8'));
  const manifests = (Array.isArray(docs) ? docs : [docs]).map((d) => {
    assert.deepEqual(d.errors, [], 'valid YAML');
    return d.toJS() as Manifest;
  });
  const pod = manifests.find((m) => m.kind === 'Pod');
  const configMap = manifests.find((m) => m.kind === 'ConfigMap');
  const spec = pod?.spec as PodSpec;
  const all = () => [...(spec.initContainers ?? []), ...spec.containers];
  const initContainer = () => {
    const c = (spec.initContainers ?? []).find((c) => argv(c).slice(0, 3).join(' ') === 'meshport hijack apply');
    assert.ok(c, 'an init container runs meshport hijack apply');
    assert.notEqual(c.restartPolicy, 'Always', 'it runs once, before the sidecar');
    return c;
  };
  const sidecar = () => {
    const c = all().find((c) => argv(c).slice(0, 2).join(' ') === 'meshport sidecar');
    assert.ok(c, 'a container runs meshport sidecar');
    return c;
  };
  const app = () => {
    const c = spec.containers.find((c) => argv(c)[0] !== 'meshport');
    assert.ok(c, 'an app container');
    return c;
  };
  let config: SidecarConfig;
  before(() => {
    assert.ok(pod, 'a Pod document');
    assert.ok(configMap, 'a ConfigMap document');
    const text = configMap.data?.['meshport.yaml'];
    assert.ok(text, 'the ConfigMap has meshport.yaml');
    // The sidecar container's environment: POD_IP from the Downward API, as the kubelet would set it.
    config = parseConfig(text, 'meshport.yaml', { POD_IP: '10.0.0.5' });
  });

  it('publishes the pod IP: node.ip comes from POD_IP, which the sidecar container gets from status.podIP', () => {
    assert.equal(config.node.ip, '10.0.0.5');
    const env =
      (sidecar() as { env?: { name: string; valueFrom?: { fieldRef?: { fieldPath?: string } } }[] }).env ?? [];
    assert.equal(env.find((e) => e.name === 'POD_IP')?.valueFrom?.fieldRef?.fieldPath, 'status.podIP');
  });

  it('holds a Pod and a ConfigMap whose meshport.yaml parseConfig accepts, with the capture listeners on', () => {
    assert.ok(config.hijack, 'the config starts the capture listeners the rules send connections to');
    assert.notEqual(config.listeners.inbound.host, '127.0.0.1', 'other pods reach the inbound listener');
  });

  it('gives meshport hijack only flags the real CLI accepts, consistent with the config', () => {
    const c = initContainer();
    const args = argv(c).slice(3);
    const r = spawnSync(process.execPath, [BIN, 'hijack', 'print', ...args], { encoding: 'utf8' });
    assert.equal(r.status, 0, `meshport hijack print ${args.join(' ')}\n${r.stderr}`);
    const f = flags(args);
    const hijack = config.hijack!;
    assert.equal(f.get('--mode'), hijack.mode);
    assert.equal(Number(f.get('--outbound-port') ?? 15001), hijack.outboundCapturePort);
    assert.equal(Number(f.get('--inbound-port') ?? 15006), hijack.inboundCapturePort);
    assert.equal(Number(f.get('--admin-port') ?? 15000), config.admin.port);
    const sc = c.securityContext ?? {};
    const caps = sc.capabilities?.add ?? [];
    assert.ok(
      sc.privileged === true || (caps.includes('NET_ADMIN') && caps.includes('NET_RAW')),
      'privileged, or NET_ADMIN + NET_RAW',
    );
  });

  it('runs the sidecar on the config where the ConfigMap is mounted', () => {
    const c = sidecar();
    const args = argv(c);
    assert.equal(args.length, 4, args.join(' '));
    assert.deepEqual(args.slice(0, 3), ['meshport', 'sidecar', '--config']);
    const volume = (spec.volumes ?? []).find((v) => v.configMap?.name === configMap!.metadata.name);
    assert.ok(volume, 'a volume of the ConfigMap');
    const mount = (c.volumeMounts ?? []).find((m) => m.name === volume.name);
    assert.ok(mount, 'the sidecar mounts it');
    const file = volume.configMap!.items?.find((i) => i.key === 'meshport.yaml')?.path ?? 'meshport.yaml';
    const mounted =
      mount.subPath === undefined
        ? path.posix.join(mount.mountPath, file)
        : mount.subPath === file
          ? mount.mountPath
          : undefined;
    assert.equal(args[3], mounted);
  });

  it('runs the sidecar as the uid the rules exclude, and the app as another', () => {
    const uid = Number(flags(argv(initContainer()).slice(3)).get('--uid') ?? DEFAULT_UID);
    assert.equal(uid, config.hijack!.uid);
    const runAs = (c: Container) => c.securityContext?.runAsUser ?? spec.securityContext?.runAsUser;
    assert.equal(runAs(sidecar()), uid);
    assert.notEqual(runAs(app()), uid, "the app's connections must be captured");
  });

  it('probes the admin port of the config: readiness /ready, liveness /healthz', () => {
    const c = sidecar();
    assert.deepEqual(probeTarget(c.readinessProbe), { port: config.admin.port, page: '/ready' });
    assert.deepEqual(probeTarget(c.livenessProbe), { port: config.admin.port, page: '/healthz' });
  });

  it("points the app's registry at a facade of the config", () => {
    const facades = config.registries.filter((r) => r.facade).map((r) => `${r.facade!.host}:${r.facade!.port}`);
    const registryEnv = (app().env ?? []).filter((e) => /ZK|ZOOKEEPER|REGISTRY|REDIS/i.test(e.name));
    assert.ok(registryEnv.length > 0, 'the app has a registry address in its env');
    for (const e of registryEnv) {
      const address = (e.value ?? '').replace(/^[a-z]+:\/\//, '').replace(/\/.*$/, '');
      assert.ok(facades.includes(address), `${e.name}=${e.value} is one of the facades ${facades.join(', ')}`);
    }
  });
});
