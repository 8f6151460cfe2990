// The Node SDK's spool against the real broker: an outage bridged by the spool with every event
// delivered once; a process killed with spooled events leaves them to the next one.
'use strict';

const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const net = require('node:net');
const path = require('node:path');
const test = require('node:test');
const vigil = require('..');
const { bootstrap, setup, options, read, verifies, draft, seqs, upTo } = require('./support');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function freePort() {
  const server = net.createServer();
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address();
  await new Promise((r) => server.close(r));
  return port;
}

/** A TCP forwarder on a fixed loopback port that refuses connections until `start`, as a
 * broker that is down does. */
class Proxy {
  constructor(target, port) {
    const [host, targetPort] = [target.slice(0, target.lastIndexOf(':')), Number(target.slice(target.lastIndexOf(':') + 1))];
    this.port = port;
    this.sockets = new Set();
    this.server = net.createServer((inbound) => {
      const outbound = net.connect(targetPort, host);
      for (const s of [inbound, outbound]) {
        this.sockets.add(s);
        s.on('error', () => {});
        s.on('close', () => { this.sockets.delete(s); inbound.destroy(); outbound.destroy(); });
      }
      inbound.pipe(outbound);
      outbound.pipe(inbound);
    });
  }

  get address() { return `127.0.0.1:${this.port}`; }

  start() { return new Promise((r) => this.server.listen(this.port, '127.0.0.1', r)); }

  stop() {
    for (const s of this.sockets) s.destroy();
    return new Promise((r) => this.server.close(() => r()));
  }
}

async function until(predicate, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  while (!predicate() && Date.now() < deadline) await sleep(100);
  return predicate();
}

test('an outage is bridged by the spool and every event arrives once', async () => {
  const { dir, key, topic } = await setup();
  const proxy = new Proxy(bootstrap(), await freePort());
  const emitter = await vigil.Emitter.start(
    options({ dir, key, topic }, { deliveryTimeoutMs: 2000, bootstrapServers: proxy.address }));
  try {
    for (let i = 0; i < 50; i++) emitter.emit(draft(i));
    assert.ok(await until(() => emitter.counters().spooled === 50, 30000), JSON.stringify(emitter.counters()));
    await proxy.start();
    assert.ok(await until(() => emitter.counters().delivered === 50, 60000), JSON.stringify(emitter.counters()));
    assert.equal(emitter.counters().dropped, 0);
    await emitter.close();
  } finally {
    emitter.closeSync();
    await proxy.stop();
  }
  const got = await read(topic, 50);
  assert.deepEqual(seqs(got), upTo(50));
  for (const r of got) assert.ok(verifies(r, key.publicKey));
});

const CHILD = `
const vigil = require(process.argv[1]);
const [keyFile, keyId, spool, topic, dead] = process.argv.slice(2);
vigil.Emitter.start({ service: 'js-kill', keyId, signingKeyFile: keyFile, spoolDir: spool, topic,
                      bootstrapServers: dead, spoolFsync: 'always', deliveryTimeoutMs: 1000 })
  .then((emitter) => {
    for (let i = 0; i < 40; i++) {
      emitter.emit({ class_uid: 'authentication', activity_name: 'logon', status_id: 'success',
                     attributes: { seq: String(i) } });
    }
    const wait = setInterval(() => {
      if (emitter.counters().spooled >= 40) { clearInterval(wait); console.log('spooled'); setInterval(() => {}, 1000); }
    }, 50);
  });
`;

test('a process killed with spooled events leaves them to the next one, delivered once', async () => {
  const { dir, key, topic } = await setup();
  const spool = path.join(dir, 'spool');
  const dead = `127.0.0.1:${await freePort()}`;
  const child = spawn(process.execPath,
    ['-e', CHILD, path.resolve(__dirname, '..'), key.pemFile, key.keyId, spool, topic, dead],
    { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise((r) => child.on('exit', (code, signal) => r(signal)));
  try {
    const said = await new Promise((resolve) => {
      let out = '';
      const timer = setTimeout(() => resolve(out), 60000);
      child.stdout.on('data', (d) => {
        out += d;
        if (out.includes('\n')) { clearTimeout(timer); resolve(out); }
      });
    });
    assert.equal(said.trim(), 'spooled');
  } finally {
    child.kill('SIGKILL');
  }
  assert.equal(await exited, 'SIGKILL');
  const emitter = await vigil.Emitter.start(options({ dir, key, topic }));
  assert.ok(await until(() => emitter.counters().delivered >= 40, 60000), JSON.stringify(emitter.counters()));
  const report = await emitter.close();
  assert.equal(report.spooled, 0);
  const got = await read(topic, 40);
  assert.deepEqual(seqs(got), upTo(40));
  assert.equal(new Set(got.map((r) => r.event.event_id)).size, 40);
  for (const r of got) assert.ok(verifies(r, key.publicKey));
});
