// X.509 v3 certificates (RFC 5280) for the development CA: the tbsCertificate assembled from der.ts pieces, signed
// with ECDSA P-256 / SHA-256 by node:crypto, and a reader for the few fields issuing needs from the CA's own
// certificate (its subject Name as encoded, its key identifier).

import { createHash, type KeyObject, randomBytes, sign } from 'node:crypto';
import {
  bitStringBytes,
  boolean,
  children,
  explicit,
  ia5,
  implicitPrimitive,
  namedBits,
  octetString,
  oid,
  oidText,
  readElement,
  sequence,
  set,
  smallInteger,
  Tag,
  time,
  unsignedInteger,
  utf8String,
} from './der';

/** The object identifiers a certificate of ours uses. */
export const OID = {
  /** ecdsa-with-SHA256 (RFC 5758 §3.2): its AlgorithmIdentifier has no parameters, not even NULL. */
  ecdsaWithSha256: '1.2.840.10045.4.3.2',
  commonName: '2.5.4.3',
  organizationName: '2.5.4.10',
  subjectKeyIdentifier: '2.5.29.14',
  keyUsage: '2.5.29.15',
  subjectAltName: '2.5.29.17',
  basicConstraints: '2.5.29.19',
  authorityKeyIdentifier: '2.5.29.35',
  extKeyUsage: '2.5.29.37',
  serverAuth: '1.3.6.1.5.5.7.3.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
} as const;

/** keyUsage bit numbers (RFC 5280 §4.2.1.3). */
const KeyUsageBit = { digitalSignature: 0, keyCertSign: 5, cRLSign: 6 } as const;

export interface CertificateSpec {
  /** The subject: CN and O, one attribute each. */
  subject: { commonName: string; organization: string };
  /** The issuer's subject Name exactly as its certificate encodes it; absent: self-signed (issuer = subject). */
  issuerName?: Buffer;
  /** The issuer's subjectKeyIdentifier; absent: self-signed (our own). */
  issuerKeyId?: Buffer;
  notBefore: Date;
  notAfter: Date;
  /** The subject's public key. */
  publicKey: KeyObject;
  /** The key that signs: the CA's (or, self-signed, the subject's own private key). */
  signingKey: KeyObject;
  /** A CA certificate (keyCertSign, cRLSign) or a leaf (digitalSignature, serverAuth + clientAuth). */
  ca: boolean;
  /** URI SANs: the SPIFFE ID of a leaf; the trust domain's own `spiffe://td` for the CA. */
  uris: string[];
}

/** Name ::= SEQUENCE OF RelativeDistinguishedName (each a SET OF one AttributeTypeAndValue), most significant first. */
export function encodeName(subject: { commonName: string; organization: string }): Buffer {
  const rdn = (type: string, value: string) => set(sequence(oid(type), utf8String(value)));
  return sequence(rdn(OID.organizationName, subject.organization), rdn(OID.commonName, subject.commonName));
}

/** Extension ::= SEQUENCE { extnID, critical BOOLEAN DEFAULT FALSE (left out when false, as DER asks), extnValue }. */
function extension(id: string, critical: boolean, value: Buffer): Buffer {
  return critical ? sequence(oid(id), boolean(true), octetString(value)) : sequence(oid(id), octetString(value));
}

/**
 * The key identifier of RFC 5280 §4.2.1.2 method (1): SHA-1 of the subjectPublicKey BIT STRING's bytes (the EC point),
 * not of the whole SubjectPublicKeyInfo.
 */
export function keyIdentifier(publicKey: KeyObject): Buffer {
  const spki = publicKey.export({ type: 'spki', format: 'der' });
  const [, subjectPublicKey] = children(readElement(spki).value); // SEQUENCE { algorithm, subjectPublicKey }
  return createHash('sha1').update(subjectPublicKey.value.subarray(1)).digest(); // past the unused-bits byte
}

/** A random positive serial of 16 bytes (RFC 5280 §4.1.2.2: positive, at most 20 bytes, unique per CA). */
function serialNumber(): Buffer {
  const bytes = randomBytes(16);
  bytes[0] &= 0x7f; // positive without a 0x00 in front
  if (bytes[0] === 0) bytes[0] = 0x01; // and 16 bytes long: a leading 0x00 would be dropped by DER's fewest bytes
  return bytes;
}

/** Builds and signs the certificate; returns its DER. */
export function buildCertificate(spec: CertificateSpec): Buffer {
  const algorithm = sequence(oid(OID.ecdsaWithSha256));
  const subjectName = encodeName(spec.subject);
  const ownKeyId = keyIdentifier(spec.publicKey);
  const extensions = [
    // basicConstraints: critical on both, so no verifier takes a leaf for a CA; cA is left out (DEFAULT FALSE) on a leaf.
    extension(OID.basicConstraints, true, spec.ca ? sequence(boolean(true)) : sequence()),
    extension(
      OID.keyUsage,
      true,
      namedBits(spec.ca ? [KeyUsageBit.keyCertSign, KeyUsageBit.cRLSign] : [KeyUsageBit.digitalSignature]),
    ),
    ...(spec.ca ? [] : [extension(OID.extKeyUsage, false, sequence(oid(OID.serverAuth), oid(OID.clientAuth)))]),
    // subjectAltName: GeneralName uniformResourceIdentifier is [6] IMPLICIT IA5String. SPIFFE (X509-SVID §4) puts the
    // ID here; the subject is free, so CN and O only help people reading the certificate.
    ...(spec.uris.length > 0
      ? [extension(OID.subjectAltName, false, sequence(...spec.uris.map((u) => implicitPrimitive(6, ia5(u)))))]
      : []),
    extension(OID.subjectKeyIdentifier, false, octetString(ownKeyId)),
    // authorityKeyIdentifier: SEQUENCE { keyIdentifier [0] IMPLICIT OCTET STRING }, so a verifier picks the right CA
    // certificate when a bundle holds the old and the new one during a CA rotation.
    extension(OID.authorityKeyIdentifier, false, sequence(implicitPrimitive(0, spec.issuerKeyId ?? ownKeyId))),
  ];
  const tbs = sequence(
    explicit(0, smallInteger(2)), // version: v3 is 2
    unsignedInteger(serialNumber()),
    algorithm,
    spec.issuerName ?? subjectName,
    sequence(time(spec.notBefore), time(spec.notAfter)),
    subjectName,
    spec.publicKey.export({ type: 'spki', format: 'der' }), // SubjectPublicKeyInfo, already DER
    explicit(3, sequence(...extensions)),
  );
  // For an EC key, crypto.sign gives the DER Ecdsa-Sig-Value X.509 wants (dsaEncoding 'der' is the default).
  const signature = sign('sha256', tbs, spec.signingKey);
  return sequence(tbs, algorithm, bitStringBytes(signature));
}

/** DER to PEM, 64 characters a line (RFC 7468). */
export function toPem(der: Buffer, label = 'CERTIFICATE'): string {
  const lines = der.toString('base64').match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

/** What issuing needs from the CA certificate: its subject Name as encoded and its subjectKeyIdentifier. */
export function issuerFields(certDer: Buffer): { subjectName: Buffer; keyId: Buffer | undefined } {
  const [tbs] = children(readElement(certDer).value);
  const fields = children(tbs.value);
  // tbsCertificate: [0] version, serial, signature, issuer, validity, subject, spki, then optional ids and [3] extensions
  const offset = fields[0].tag === 0xa0 ? 1 : 0;
  const subjectName = Buffer.from(fields[offset + 4].raw);
  let keyId: Buffer | undefined;
  const extensions = fields.find((f) => f.tag === 0xa3);
  if (extensions) {
    for (const ext of children(readElement(extensions.value).value)) {
      const parts = children(ext.value);
      if (parts[0].tag === Tag.OID && oidText(parts[0].value) === OID.subjectKeyIdentifier) {
        const extnValue = parts[parts.length - 1].value; // the OCTET STRING holding the DER of the keyIdentifier
        keyId = Buffer.from(readElement(extnValue).value);
      }
    }
  }
  return { subjectName, keyId };
}
