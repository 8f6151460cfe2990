#!/usr/bin/env node
// Builds the Rust core (crate vigil-js) into vigil.node beside this file. It is the package's
// `install` script, so `npm install ./producers/js` builds it on a machine with a Rust
// toolchain, as `pip install ./producers/python` does for Python.
//
//   VIGIL_SDK_PROFILE=dev   build unoptimised, reusing what `cargo test` built (the test
//                           suite does this); the default, release, is what a service runs
'use strict';

const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const profile = process.env.VIGIL_SDK_PROFILE || 'release';
const args = ['build', '-p', 'vigil-js', '--profile', profile, '--locked',
  '--message-format=json-render-diagnostics'];
const cargo = process.env.CARGO || 'cargo';
const started = Date.now();
const run = spawnSync(cargo, args, {
  cwd: __dirname,
  env: { CARGO_INCREMENTAL: '0', ...process.env },
  stdio: ['ignore', 'pipe', 'inherit'],
  maxBuffer: 256 * 1024 * 1024,
  encoding: 'utf8',
});
if (run.error) {
  console.error(`vigil-sdk: cannot run ${cargo} (a Rust toolchain is needed): ${run.error.message}`);
  process.exit(1);
}
if (run.status !== 0) {
  console.error(`vigil-sdk: cargo build failed (exit ${run.status})`);
  process.exit(run.status || 1);
}

// The artifact path from cargo's own messages, wherever CARGO_TARGET_DIR points.
let library;
for (const line of run.stdout.split('\n')) {
  if (!line.startsWith('{')) continue;
  const message = JSON.parse(line);
  if (message.reason === 'compiler-artifact' && message.target.name === 'vigil_node') {
    library = message.filenames.find((f) => /\.(so|dylib|dll)$/.test(f));
  }
}
if (!library) {
  console.error('vigil-sdk: cargo built no vigil_node library');
  process.exit(1);
}
// Copy to a fresh name and rename: a running process that has the old file mapped keeps it.
const target = path.join(__dirname, 'vigil.node');
const partial = `${target}.${process.pid}.tmp`;
fs.copyFileSync(library, partial);
fs.renameSync(partial, target);
console.error(`vigil-sdk: built ${path.basename(target)} (${profile}) in ${((Date.now() - started) / 1000).toFixed(1)} s`);
