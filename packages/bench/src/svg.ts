// A suite's chart as one self-contained SVG: horizontal bars for throughput (with the spread as a whisker) above
// lines for latency percentiles. No library: GitHub shows an SVG from the repository as an image, so plain shapes
// on an opaque white background read the same in its light and dark themes.

import type { BarChart, LineChart, SuiteCharts } from './suite';

const WIDTH = 860;
const PAD = 16;
const FONT = 'font-family="Helvetica, Arial, sans-serif"';
const PALETTE = [
  '#4e79a7',
  '#f28e2b',
  '#59a14f',
  '#e15759',
  '#76b7b2',
  '#edc948',
  '#b07aa1',
  '#9c755f',
  '#bab0ac',
  '#ff9da7',
];

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** 1234567 -> 1.23M; 0.0123 -> 0.0123: short labels for axes and bar ends. */
export function shortNumber(v: number): string {
  const a = Math.abs(v);
  const trim = (s: string) => s.replace(/\.0+$|(\.\d*?)0+$/, '$1');
  if (a >= 1e9) return `${trim((v / 1e9).toFixed(2))}G`;
  if (a >= 1e6) return `${trim((v / 1e6).toFixed(2))}M`;
  if (a >= 1e4) return `${trim((v / 1e3).toFixed(1))}k`;
  if (a >= 100) return String(Math.round(v));
  if (a >= 1) return trim(v.toFixed(2));
  return trim(v.toPrecision(3));
}

/** Round tick steps (1, 2, 5 x 10^n) covering 0..max in about `count` steps. */
function linearTicks(max: number, count = 5): number[] {
  if (!(max > 0)) return [0, 1];
  const raw = max / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const ticks: number[] = [];
  for (let t = 0; t <= max + step * 1e-9; t += step) ticks.push(t);
  if (ticks[ticks.length - 1] < max) ticks.push(ticks[ticks.length - 1] + step);
  return ticks;
}

function barPanel(chart: BarChart, top: number): { svg: string; height: number } {
  const labelWidth = 300;
  const barLeft = PAD + labelWidth;
  const barRight = WIDTH - PAD - 90;
  const rowHeight = 22;
  const head = 28;
  const values = chart.bars.map((b) => b.value * (1 + (b.spread ?? 0) / 2));
  const ticks = linearTicks(Math.max(...values, 0));
  const max = ticks[ticks.length - 1];
  const x = (v: number) => barLeft + ((barRight - barLeft) * Math.max(0, v)) / max;
  const height = head + chart.bars.length * rowHeight + 24;
  const parts: string[] = [];
  parts.push(
    `<text x="${PAD}" y="${top + 18}" font-size="14" font-weight="bold" ${FONT}>${esc(chart.title)} (${esc(chart.unit)})</text>`,
  );
  const axisBottom = top + head + chart.bars.length * rowHeight;
  for (const t of ticks) {
    parts.push(`<line x1="${x(t)}" y1="${top + head - 4}" x2="${x(t)}" y2="${axisBottom}" stroke="#e4e4e4"/>`);
    parts.push(
      `<text x="${x(t)}" y="${axisBottom + 14}" font-size="11" text-anchor="middle" fill="#555" ${FONT}>${shortNumber(t)}</text>`,
    );
  }
  chart.bars.forEach((b, i) => {
    const y = top + head + i * rowHeight;
    const color = PALETTE[i % PALETTE.length];
    parts.push(
      `<text x="${barLeft - 8}" y="${y + 15}" font-size="12" text-anchor="end" ${FONT}>${esc(b.label)}</text>`,
    );
    parts.push(
      `<rect x="${barLeft}" y="${y + 3}" width="${Math.max(1, x(b.value) - barLeft)}" height="${rowHeight - 8}" fill="${color}"><title>${esc(`${b.label}: ${b.value}`)}</title></rect>`,
    );
    if (b.spread && b.spread > 0) {
      // The spread is (max - min) / median of the samples; drawn centred on the median as its extent.
      const lo = x(b.value * (1 - b.spread / 2));
      const hi = x(b.value * (1 + b.spread / 2));
      const cy = y + rowHeight / 2 - 1;
      parts.push(
        `<path d="M${lo} ${cy}H${hi}M${lo} ${cy - 4}V${cy + 4}M${hi} ${cy - 4}V${cy + 4}" stroke="#222" stroke-width="1.2" fill="none"/>`,
      );
    }
    const labelX = Math.max(x(b.value), b.spread ? x(b.value * (1 + b.spread / 2)) : 0) + 6;
    parts.push(`<text x="${labelX}" y="${y + 15}" font-size="11" fill="#333" ${FONT}>${shortNumber(b.value)}</text>`);
  });
  return { svg: parts.join('\n'), height };
}

function linePanel(chart: LineChart, top: number): { svg: string; height: number } {
  const plotLeft = PAD + 60;
  // The legend takes what its longest label needs (about 6.6 px a character at 12 px), the plot the rest.
  const legendWidth = Math.max(160, 50 + 6.6 * Math.max(0, ...chart.series.map((s) => s.label.length)));
  const plotRight = WIDTH - PAD - Math.min(legendWidth, WIDTH / 2);
  const head = 28;
  const plotHeight = Math.max(180, chart.series.length * 18);
  const plotTop = top + head;
  const plotBottom = plotTop + plotHeight;
  const all = chart.series.flatMap((s) => s.values).filter((v) => Number.isFinite(v) && v > 0);
  const parts: string[] = [];
  parts.push(
    `<text x="${PAD}" y="${top + 18}" font-size="14" font-weight="bold" ${FONT}>${esc(chart.title)} (${esc(chart.unit)}${chart.log ? ', log scale' : ''})</text>`,
  );
  let y: (v: number) => number;
  let ticks: number[];
  if (chart.log && all.length > 0) {
    const lo = 10 ** Math.floor(Math.log10(Math.min(...all)));
    const hi = 10 ** Math.ceil(Math.log10(Math.max(...all)));
    ticks = [];
    for (let t = lo; t <= hi * 1.0001; t *= 10) ticks.push(t);
    if (ticks.length < 2) ticks.push(lo * 10);
    const l0 = Math.log10(ticks[0]);
    const l1 = Math.log10(ticks[ticks.length - 1]);
    y = (v) => plotBottom - ((Math.log10(Math.max(v, ticks[0])) - l0) / (l1 - l0)) * plotHeight;
  } else {
    ticks = linearTicks(Math.max(...all, 0));
    const max = ticks[ticks.length - 1];
    y = (v) => plotBottom - (Math.max(0, v) / max) * plotHeight;
  }
  for (const t of ticks) {
    parts.push(`<line x1="${plotLeft}" y1="${y(t)}" x2="${plotRight}" y2="${y(t)}" stroke="#e4e4e4"/>`);
    parts.push(
      `<text x="${plotLeft - 6}" y="${y(t) + 4}" font-size="11" text-anchor="end" fill="#555" ${FONT}>${shortNumber(t)}</text>`,
    );
  }
  const xs = chart.x.map((_, i) => plotLeft + 20 + ((plotRight - plotLeft - 40) * i) / Math.max(1, chart.x.length - 1));
  chart.x.forEach((label, i) => {
    parts.push(
      `<text x="${xs[i]}" y="${plotBottom + 16}" font-size="12" text-anchor="middle" ${FONT}>${esc(label)}</text>`,
    );
  });
  chart.series.forEach((s, i) => {
    const color = PALETTE[i % PALETTE.length];
    const pts = s.values
      .map((v, j) => (Number.isFinite(v) ? `${xs[j].toFixed(1)},${y(v).toFixed(1)}` : null))
      .filter((p): p is string => p !== null);
    parts.push(`<polyline points="${pts.join(' ')}" fill="none" stroke="${color}" stroke-width="2"/>`);
    s.values.forEach((v, j) => {
      if (Number.isFinite(v))
        parts.push(
          `<circle cx="${xs[j].toFixed(1)}" cy="${y(v).toFixed(1)}" r="3" fill="${color}"><title>${esc(`${s.label} ${chart.x[j]}: ${v}`)}</title></circle>`,
        );
    });
    const ly = plotTop + 6 + i * 18;
    parts.push(
      `<line x1="${plotRight + 20}" y1="${ly}" x2="${plotRight + 40}" y2="${ly}" stroke="${color}" stroke-width="3"/>`,
    );
    parts.push(`<text x="${plotRight + 46}" y="${ly + 4}" font-size="12" ${FONT}>${esc(s.label)}</text>`);
  });
  return { svg: parts.join('\n'), height: head + plotHeight + 28 };
}

/** The chart of one suite, or null when it has nothing to draw. */
export function renderChart(title: string, charts: SuiteCharts): string | null {
  if (!charts.bars && !charts.lines) return null;
  const panels: string[] = [];
  let top = 40;
  if (charts.bars && charts.bars.bars.length > 0) {
    const p = barPanel(charts.bars, top);
    panels.push(p.svg);
    top += p.height + 12;
  }
  if (charts.lines && charts.lines.series.length > 0) {
    const p = linePanel(charts.lines, top);
    panels.push(p.svg);
    top += p.height + 8;
  }
  const height = top + PAD;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" role="img" aria-label="${esc(title)}">`,
    `<rect width="${WIDTH}" height="${height}" fill="#ffffff" stroke="#d0d7de"/>`,
    `<text x="${PAD}" y="26" font-size="16" font-weight="bold" ${FONT}>${esc(title)}</text>`,
    ...panels,
    '</svg>',
    '',
  ].join('\n');
}
