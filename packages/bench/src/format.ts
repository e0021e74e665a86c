// Number formatting and tables, plain text and markdown.

export type Align = 'l' | 'r';

/** 12,345,678 */
export function int(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

/** Fixed decimals with thousands separators. */
export function fixed(n: number, digits: number): string {
  return n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

export function percent(x: number): string {
  return `${(x * 100).toFixed(1)}%`;
}

/** A table with aligned columns, for a terminal. */
export function textTable(headers: string[], rows: string[][], align: Align[]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const cell = (s: string, i: number) => (align[i] === 'r' ? s.padStart(widths[i]) : s.padEnd(widths[i]));
  const line = (cells: string[]) => cells.map(cell).join('  ').trimEnd();
  return [line(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

/** A GitHub-flavoured markdown table. */
export function markdownTable(headers: string[], rows: string[][], align: Align[]): string {
  const esc = (s: string) => s.replace(/\|/g, '\\|');
  const line = (cells: string[]) => `| ${cells.map(esc).join(' | ')} |`;
  const rule = `|${align.map((a) => (a === 'r' ? '---:' : '---')).join('|')}|`;
  return [line(headers), rule, ...rows.map(line)].join('\n');
}
