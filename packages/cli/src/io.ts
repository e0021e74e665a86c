// The streams a command talks to, injected so tests can run commands in-process.

export interface Io {
  stdin: NodeJS.ReadableStream;
  stdout: { write(text: string): unknown };
  stderr: { write(text: string): unknown };
}

export const processIo: Io = { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr };
