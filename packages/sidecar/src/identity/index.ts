// Identities of sidecars: the development CA, loading and checking the TLS files, and watching them for rotation.

export { DEV_CA_DEFAULTS, initCa, issueCertificate, readCa } from './ca';
export type { DevCa, InitCaOptions, IssueCertificateOptions, IssuedCertificate } from './ca';
export { checkTlsFiles, loadTlsMaterial, TLS_CHECK_DEFAULTS } from './material';
export type { TlsCheck, TlsCheckName, TlsFiles, TlsFilesReport } from './material';
export { IDENTITY_FORM, parseSpiffeId, sanUris, spiffeIdsOf, TRUST_DOMAIN_PATTERN } from './spiffe';
export { TLS_WATCH_DEFAULTS, watchTlsMaterial } from './watch';
export type { TlsWatch, TlsWatchOptions } from './watch';
