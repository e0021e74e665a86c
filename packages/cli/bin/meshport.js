#!/usr/bin/env node
'use strict';
// Thin launcher: the command lives in dist/ after `npm run build` (bootstrap runs it).
require('../dist/src/main.js')
  .main(process.argv.slice(2))
  .then((code) => {
    if (typeof code === 'number') process.exitCode = code;
  });
