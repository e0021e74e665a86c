export { loadEngineAddon, type EngineAddon } from './native';
