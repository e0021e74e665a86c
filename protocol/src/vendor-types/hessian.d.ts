// The part of hessian.js / hessian.js-1 meshport calls (neither ships types).
declare module 'hessian.js' {
  export class DecoderV2 {
    constructor(buf: Buffer);
    read(withType?: boolean): unknown;
    byteBuffer: { position(): number; limit(): number };
  }
}
declare module 'hessian.js-1' {
  export class DecoderV2 {
    constructor(buf: Buffer);
    read(withType?: boolean): unknown;
    byteBuffer: { position(): number; limit(): number };
  }
}
