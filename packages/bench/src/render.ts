// One renderer for every suite's report: a suite says once what it shows (tables, notes) and gets both the terminal
// text and the markdown of docs/benchmarks.md from that, so the two can no longer drift apart.

import { type Align, markdownTable, textTable } from './format';

export type ReportFormat = 'text' | 'markdown';

/** Rows under columns; `title`, when given, is a line of its own above the table. */
export interface ReportTable {
  title?: string;
  headers: string[];
  /** One per column: 'r' for figures, 'l' for names. */
  align: Align[];
  rows: string[][];
}

/** Bullet points under the tables. `methodNotes` say how it was measured and go to the docs page only. */
export interface ReportNotes {
  notes: string[];
  methodNotes?: string[];
}

/** Lines written as they are, in both formats (e.g. a profile summary, already markdown). */
export interface ReportLines {
  lines: string[];
}

export type ReportSection = ReportTable | ReportNotes | ReportLines;

export function renderTable(table: ReportTable, format: ReportFormat): string {
  const body =
    format === 'markdown'
      ? markdownTable(table.headers, table.rows, table.align)
      : textTable(table.headers, table.rows, table.align);
  return table.title === undefined ? body : `${table.title}\n\n${body}`;
}

/** The sections in order, a blank line between two; a section with nothing in it is left out. */
export function renderSections(sections: ReportSection[], format: ReportFormat): string {
  return sections
    .map((s) => {
      if ('rows' in s) return renderTable(s, format);
      if ('lines' in s) return s.lines.join('\n');
      const notes = format === 'markdown' ? [...s.notes, ...(s.methodNotes ?? [])] : s.notes;
      return notes.map((n) => `- ${n}`).join('\n');
    })
    .filter((text) => text !== '')
    .join('\n\n');
}

/** What a suite returns as `text` and `markdown`. */
export function renderReport(sections: ReportSection[]): { text: string; markdown: string } {
  return { text: renderSections(sections, 'text'), markdown: renderSections(sections, 'markdown') };
}
