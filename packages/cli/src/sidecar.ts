// What `meshport sidecar` needs, in one module so main.ts can load it only for that command.

export { Sidecar, loadConfig, parseConfig, preflight } from '@meshport/sidecar';
export { MeshportError } from '@meshport/protocol';
