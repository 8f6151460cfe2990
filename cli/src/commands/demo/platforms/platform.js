// A `vigil demo` platform: a Node.js service that emits through the Node.js SDK (vigil-sdk).
//
// Run by the demo as `node platform.js JOB`, with the SDK package's folder in VIGIL_DEMO_SDK.
// JOB is the same JSON object platform.py takes:
//
//   {"kind": "traffic", service, key_id, host, spool_dir, topic, platform_index, start, count, message?}
//   {"kind": "trace", ..., principal, client_ip, traceparent?}
//
// `traffic` sends `count` normal events; `trace` sends one failed login in the trace
// `traceparent` names, or in a new one. The signing key is the PEM text in
// VIGIL_DEMO_SIGNING_KEY; the broker and the registry come from VIGIL_KAFKA_BOOTSTRAP and
// VIGIL_SCHEMA_REGISTRY_URL. The last stdout line is a JSON report: events emitted, what close
// left in flight or spooled, and the traceparent handed on.
'use strict';

const vigil = require(process.env.VIGIL_DEMO_SDK);

const ACTIVITIES = [
  ['authentication', 'login'],
  ['signature_verification', 'verify'],
  ['authorization', 'authorize'],
];

function normalEvent(job, i) {
  const [classUid, activity] = ACTIVITIES[i % 3];
  return {
    class_uid: classUid,
    activity_name: activity,
    status_id: 'success',
    subject: {
      principal: `user-${String(i % 23).padStart(2, '0')}`,
      key_id: job.key_id,
      client_ip: `10.${job.platform_index + 1}.0.${(i % 200) + 1}`,
      tenant: 'acme-bank',
    },
    message: job.message || `${activity} ok`,
  };
}

function failedLogin(job) {
  return {
    class_uid: 'authentication',
    activity_name: 'login',
    status_id: 'failure',
    status_detail: 'wrong one-time code',
    subject: { principal: job.principal, key_id: job.key_id, client_ip: job.client_ip, tenant: 'acme-bank' },
    message: `login failed at ${job.service}`,
  };
}

async function main() {
  const job = JSON.parse(process.argv[2]);
  const emitter = await vigil.Emitter.start({
    service: job.service,
    keyId: job.key_id,
    host: job.host,
    spoolDir: job.spool_dir,
    topic: job.topic,
    signingKeyEnv: 'VIGIL_DEMO_SIGNING_KEY',
    closeTimeoutMs: 5000,
  });
  let emitted = 0;
  let handedOn = null;
  let report;
  try {
    if (job.kind === 'traffic') {
      for (let i = job.start; i < job.start + job.count; i += 1) {
        emitter.emit(normalEvent(job, i));
        emitted += 1;
      }
    } else if (job.kind === 'trace') {
      handedOn = vigil.continueTrace(job.traceparent, (traceparent) => {
        emitter.emit(failedLogin(job));
        emitted += 1;
        return traceparent;
      });
    } else {
      throw new Error(`unknown job kind ${JSON.stringify(job.kind)}`);
    }
  } finally {
    report = await emitter.close();
  }
  console.log(JSON.stringify({ emitted, in_flight: report.inFlight, spooled: report.spooled, traceparent: handedOn }));
}

main().catch((e) => {
  console.error(`${e.code || 'error'}: ${e.message}`);
  process.exitCode = 1;
});
