// Medians, spreads and quantiles, and ratios to a peer taken round by round.

export function median(xs: ArrayLike<number>): number {
  const s = Array.from(xs).sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** (max - min) / median; 0 for fewer than two samples. */
export function spread(xs: number[]): number {
  const m = median(xs);
  return xs.length > 1 && m > 0 ? (Math.max(...xs) - Math.min(...xs)) / m : 0;
}

/** Nearest-rank quantile of an ascending array. */
export function quantile(sorted: ArrayLike<number>, q: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

/**
 * A against its peer B, round by round: round i's ratio is a[i] / b[i], both taken in the same round, so a slow
 * spell of the machine moves numerator and denominator together. Median and spread of those ratios.
 */
export function roundRatio(a: number[], b: number[]): { ratio: number; spread: number; rounds: number } {
  const n = Math.min(a.length, b.length);
  const ratios: number[] = [];
  for (let i = 0; i < n; i++) if (b[i] > 0) ratios.push(a[i] / b[i]);
  return { ratio: median(ratios), spread: spread(ratios), rounds: ratios.length };
}
