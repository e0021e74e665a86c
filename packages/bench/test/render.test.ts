// The one report renderer: a suite's sections give the terminal text and the docs markdown with the same content.

import assert from 'node:assert/strict';
import { renderReport, renderTable, type ReportSection, type ReportTable } from '../src/render';

const figures: ReportTable = {
  headers: ['case', 'req/s'],
  align: ['l', 'r'],
  rows: [
    ['direct', '120,000'],
    ['meshport | native', '95,000'],
  ],
};

describe('bench report renderer', () => {
  it('renders one description as an aligned text table and as a markdown table with the same cells', () => {
    const { text, markdown } = renderReport([figures]);
    assert.equal(
      text,
      [
        'case                 req/s',
        '-----------------  -------',
        'direct             120,000',
        'meshport | native   95,000',
      ].join('\n'),
    );
    assert.equal(
      markdown,
      ['| case | req/s |', '|---|---:|', '| direct | 120,000 |', '| meshport \\| native | 95,000 |'].join('\n'),
    );
  });

  it('puts a blank line between sections, a title above its table, notes as bullets, and method notes in the docs only', () => {
    const sections: ReportSection[] = [
      figures,
      { title: 'Where the time goes:', headers: ['thread', 'CPU us/req'], align: ['l', 'r'], rows: [['main', '1.50']] },
      { notes: ['Goals: all met.'], methodNotes: ['Rig: one namespace per measurement.'] },
      { lines: ['### Profile', '', '| function | self |'] },
    ];
    const { text, markdown } = renderReport(sections);
    const textParts = text.split('\n\n');
    assert.deepEqual(textParts.slice(1), [
      'Where the time goes:',
      'thread  CPU us/req\n------  ----------\nmain          1.50',
      '- Goals: all met.',
      '### Profile',
      '| function | self |',
    ]);
    assert.ok(markdown.includes('Where the time goes:\n\n| thread | CPU us/req |'));
    assert.ok(markdown.includes('- Goals: all met.\n- Rig: one namespace per measurement.\n\n### Profile'));
    assert.ok(!text.includes('Rig:'), 'the method is for the docs page');
  });

  it('leaves out a section with nothing in it instead of printing blank lines', () => {
    assert.equal(renderReport([figures, { notes: [] }]).text, renderTable(figures, 'text'));
  });
});
