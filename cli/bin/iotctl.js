#!/usr/bin/env node
'use strict';
// The repository ships no compiled output: every process runs its TypeScript
// through tsx, and so does iotctl (registered in this process, no child).
require('tsx/cjs/api').register();
require('../src/main.ts')
  .main(process.argv)
  .then((code) => {
    process.exitCode = code;
  });
