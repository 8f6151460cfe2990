#![allow(clippy::expect_used, clippy::unwrap_used)] // tests: a failed setup should stop loudly

//! The handler's assignment hooks against the real broker: a handler learns which partitions
//! (of the source and the retry topics) it holds, without any record flowing, revokes come
//! before the following assigns, and the end of a run revokes what is still held.

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use common::*;
use vigil_consumer::{HandleError, Handler, InboundRecord, Outcome};

type Partition = (String, i32);

/// A handler that handles every record and records every assignment change.
#[derive(Default)]
struct Tracking {
    /// `(assigned?, partitions)` in call order.
    changes: Mutex<Vec<(bool, Vec<Partition>)>>,
}

impl Tracking {
    /// Replays the changes; panics if a revoke names a partition not held or an assign one
    /// already held (the hooks would be out of order).
    fn held(&self) -> BTreeSet<Partition> {
        let mut held = BTreeSet::new();
        for (assigned, partitions) in self.changes.lock().unwrap().iter() {
            assert!(
                !partitions.is_empty(),
                "a hook is never called with nothing"
            );
            for p in partitions {
                if *assigned {
                    assert!(held.insert(p.clone()), "{p:?} assigned twice");
                } else {
                    assert!(held.remove(p), "{p:?} revoked but not held");
                }
            }
        }
        held
    }

    fn revokes(&self) -> usize {
        self.changes
            .lock()
            .unwrap()
            .iter()
            .filter(|(a, _)| !a)
            .count()
    }

    fn last(&self) -> Option<(bool, Vec<Partition>)> {
        self.changes.lock().unwrap().last().cloned()
    }
}

impl Handler for Tracking {
    async fn handle(&self, _record: &InboundRecord) -> Result<Outcome, HandleError> {
        Ok(Outcome::Handled)
    }

    fn partitions_assigned(&self, topic_partitions: &[(String, i32)]) {
        self.changes
            .lock()
            .unwrap()
            .push((true, topic_partitions.to_vec()));
    }

    fn partitions_revoked(&self, topic_partitions: &[(String, i32)]) {
        self.changes
            .lock()
            .unwrap()
            .push((false, topic_partitions.to_vec()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_follow_the_assignment_across_members_and_the_end_of_a_run() {
    let topics = Topics::create(2).await;
    let config = topics.config();
    let all: BTreeSet<Partition> = std::iter::once(&topics.source)
        .chain(topics.retry.iter())
        .flat_map(|t| (0..2).map(move |p| (t.clone(), p)))
        .collect();
    assert_eq!(
        all.len(),
        6,
        "source and both retry topics, 2 partitions each"
    );

    // Alone, a member is told it holds everything, though no record ever arrives.
    let a = Arc::new(Tracking::default());
    let first = start_runtime(config.clone(), a.clone());
    eventually(
        "the first member is told it holds every partition",
        WAIT,
        || a.held() == all,
    )
    .await;
    assert_eq!(a.revokes(), 0);

    // A second member joins: the partitions are split, each held by exactly one member.
    let b = Arc::new(Tracking::default());
    let second = start_runtime(config.clone(), b.clone());
    eventually("the partitions are split between the members", WAIT, || {
        let (ha, hb) = (a.held(), b.held());
        !ha.is_empty()
            && !hb.is_empty()
            && ha.is_disjoint(&hb)
            && ha.union(&hb).cloned().collect::<BTreeSet<_>>() == all
    })
    .await;
    assert!(a.revokes() >= 1, "the first member gave partitions up");
    let b_held = b.held();

    // The second member stops: its run ends by revoking what it held; the first takes it all.
    second.stop().await.expect("second member stops cleanly");
    assert_eq!(b.held(), BTreeSet::new(), "nothing held after the run");
    let (assigned, last) = b.last().expect("the second member saw changes");
    assert!(!assigned, "the last call of a run is a revoke");
    assert_eq!(last.into_iter().collect::<BTreeSet<_>>(), b_held);
    eventually("the first member holds every partition again", WAIT, || {
        a.held() == all
    })
    .await;

    first.stop().await.expect("first member stops cleanly");
    assert_eq!(a.held(), BTreeSet::new());
}
