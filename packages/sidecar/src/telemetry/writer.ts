// What every telemetry target does with the lines the router hands over.

/** Whole lines as the router hands them over: a string, or the native engine's UTF-8 bytes (never changed here). */
export type Lines = string | Buffer;

export interface LineWriter {
  /**
   * `lines`: whole lines, each ending in '\n', standing for `count` items (lines; spans for the trace file). Never throws:
   * what cannot be written is counted as dropped.
   */
  write(lines: Lines, count: number): void;
  /** Delivers what is waiting, for at most `waitMs`; what is left then is dropped. Later writes are dropped. */
  close(waitMs: number): Promise<void>;
}

/** How a writer reports: lines delivered, and lines lost (with the error, when one caused it). */
export interface WriterEvents {
  written(count: number): void;
  dropped(count: number, error?: Error): void;
}

/** The number of lines in `text` ('\n' characters): counted, never parsed. */
export function lineCount(text: Lines): number {
  let n = 0;
  if (typeof text === 'string') for (let at = text.indexOf('\n'); at !== -1; at = text.indexOf('\n', at + 1)) n++;
  else for (let at = text.indexOf(NEWLINE); at !== -1; at = text.indexOf(NEWLINE, at + 1)) n++;
  return n;
}

const NEWLINE = 0x0a;
