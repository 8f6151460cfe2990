//! Signature checks, one at a time or in opportunistic batches.
//!
//! The consumer runtime pipelines each partition's records (`pipeline_depth`, 64 by default), so
//! up to that many checks per busy partition wait at once. In batched mode
//! every handler submits its check to one verification thread, which takes whatever has queued
//! up (at most `verify_batch_max`) and checks it with `verify_batch`: under load the queue fills
//! while the previous batch runs, so batches grow with load without any added waiting, and an
//! idle verifier checks a lone record at once.

use std::time::Instant;

use prometheus::Histogram;
use tokio::sync::{mpsc, oneshot};
use vigil_schemas::signing::{BatchItem, verify_batch};
use vigil_schemas::{PublicKey, Signature};

/// One queued check.
struct Job {
    value: Vec<u8>,
    signature: Signature,
    key: PublicKey,
    reply: oneshot::Sender<bool>,
}

/// Checks signatures, inline or through the batching thread.
#[derive(Debug)]
pub enum SignatureChecker {
    /// Each check runs on the calling task.
    Single,
    /// Checks go to the batching thread.
    Batched(mpsc::Sender<JobHandle>),
}

/// A queued check (opaque).
pub struct JobHandle(Job);

impl std::fmt::Debug for JobHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JobHandle")
    }
}

/// The batching thread stopped (only when the checker is dropped during shutdown).
#[derive(Debug, thiserror::Error)]
#[error("signature verification thread stopped")]
pub struct CheckerStopped;

impl SignatureChecker {
    /// Returns a checker; `batch_max` 1 checks inline, more starts the batching thread.
    pub fn new(batch_max: usize, batch_sizes: Histogram) -> Result<Self, std::io::Error> {
        if batch_max <= 1 {
            return Ok(SignatureChecker::Single);
        }
        let (tx, rx) = mpsc::channel::<JobHandle>(batch_max * 4);
        std::thread::Builder::new()
            .name("vigil-verify".into())
            .spawn(move || batch_loop(rx, batch_max, batch_sizes))?;
        Ok(SignatureChecker::Batched(tx))
    }

    /// Returns whether `signature` verifies over exactly `value` under `key`.
    pub async fn check(
        &self,
        value: &[u8],
        signature: &Signature,
        key: &PublicKey,
    ) -> Result<bool, CheckerStopped> {
        match self {
            SignatureChecker::Single => Ok(key.verify(value, signature).is_ok()),
            SignatureChecker::Batched(tx) => {
                let (reply, answer) = oneshot::channel();
                let job = Job {
                    value: value.to_vec(),
                    signature: *signature,
                    key: *key,
                    reply,
                };
                tx.send(JobHandle(job)).await.map_err(|_| CheckerStopped)?;
                answer.await.map_err(|_| CheckerStopped)
            }
        }
    }
}

/// A batch at least this large means checks are arriving faster than one at a time: the thread
/// then waits [`TOP_UP_WAIT`] once for more before checking, because a batch's cost per signature
/// falls with its size (measured by `scripts/bench-verifier`: 8 → 16 µs, 16 → 14 µs, 64 → 13 µs,
/// 256 → 11 µs). A lone check on an idle verifier never waits.
const TOP_UP_FROM: usize = 8;

/// How long a busy batch waits once to fill up (bounded added latency).
const TOP_UP_WAIT: std::time::Duration = std::time::Duration::from_micros(250);

fn drain_into(rx: &mut mpsc::Receiver<JobHandle>, batch: &mut Vec<Job>, batch_max: usize) {
    while batch.len() < batch_max {
        match rx.try_recv() {
            Ok(JobHandle(j)) => batch.push(j),
            Err(_) => break,
        }
    }
}

fn batch_loop(mut rx: mpsc::Receiver<JobHandle>, batch_max: usize, sizes: Histogram) {
    let mut batch: Vec<Job> = Vec::with_capacity(batch_max);
    while let Some(JobHandle(first)) = rx.blocking_recv() {
        batch.push(first);
        drain_into(&mut rx, &mut batch, batch_max);
        if batch.len() >= TOP_UP_FROM.min(batch_max) && batch.len() < batch_max {
            std::thread::sleep(TOP_UP_WAIT);
            drain_into(&mut rx, &mut batch, batch_max);
        }
        let started = Instant::now();
        let items: Vec<BatchItem<'_>> = batch
            .iter()
            .map(|j| BatchItem {
                value: &j.value,
                signature: &j.signature,
                key: &j.key,
            })
            .collect();
        let results = verify_batch(&items);
        drop(items);
        sizes.observe(batch.len() as f64);
        tracing::trace!(
            size = batch.len(),
            elapsed_us = started.elapsed().as_micros() as u64,
            "verified batch"
        );
        for (job, ok) in batch.drain(..).zip(results) {
            // A handler that stopped waiting (shutdown) no longer needs the answer.
            let _ = job.reply.send(ok.is_ok());
        }
    }
}
