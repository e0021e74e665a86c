#!/usr/bin/env node
'use strict';
// Thin launcher: the command lives in dist/ after `npm run build` (bootstrap runs it).
// A reader that stops early (`meshport decode ... | head`) is not an error of ours.
process.stdout.on('error', (err) => {
  if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw err;
});
require('../dist/src/main.js')
  .main(process.argv.slice(2))
  .then((code) => {
    if (typeof code === 'number') process.exitCode = code;
  });
