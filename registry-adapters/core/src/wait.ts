// A bounded wait, as every adapter needs it for its first connection and its goodbye to the server.

/** Waits for `p` at most `ms`, then goes on; never rejects (a rejection of `p` counts as done). */
export async function waitAtMost(p: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([p.catch(() => {}), new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))]);
  clearTimeout(timer);
}
