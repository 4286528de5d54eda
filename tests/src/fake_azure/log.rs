//! A request log shared by both Azure fakes: records in arrival order, outcomes filled in when
//! decided, and waiters woken on every change.

use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::watch;

use super::util::lock;
use super::Outcome;
use crate::fake_support::wait::wait_for_log;

/// What a log needs from its records.
pub(crate) trait LogRecord: Clone + Send + 'static {
    fn seq(&self) -> u64;
    fn set_seq(&mut self, seq: u64);
    fn outcome(&self) -> Outcome;
    fn set_outcome(&mut self, outcome: Outcome);
    /// One line without credentials.
    fn summary(&self) -> String;
}

/// Implements [`LogRecord`] for a record type with `seq` and `outcome` fields and an inherent
/// `summary`.
macro_rules! impl_log_record {
    ($record:ty) => {
        impl $crate::fake_azure::log::LogRecord for $record {
            fn seq(&self) -> u64 {
                self.seq
            }
            fn set_seq(&mut self, seq: u64) {
                self.seq = seq;
            }
            fn outcome(&self) -> $crate::fake_azure::Outcome {
                self.outcome
            }
            fn set_outcome(&mut self, outcome: $crate::fake_azure::Outcome) {
                self.outcome = outcome;
            }
            fn summary(&self) -> String {
                <$record>::summary(self)
            }
        }
    };
}
pub(crate) use impl_log_record;

#[derive(Debug)]
struct Records<R> {
    list: Vec<R>,
    next_seq: u64,
}

#[derive(Debug)]
pub(crate) struct RequestLog<R> {
    records: Mutex<Records<R>>,
    // Bumped on every change so waiters wake without polling.
    changes: watch::Sender<u64>,
    /// Print one line per finished request on stderr with this prefix (the demo binary).
    echo: Option<&'static str>,
}

impl<R: LogRecord> RequestLog<R> {
    pub(crate) fn new(echo: Option<&'static str>) -> Self {
        Self {
            records: Mutex::new(Records {
                list: Vec::new(),
                next_seq: 0,
            }),
            changes: watch::Sender::new(0),
            echo,
        }
    }

    /// Appends a record (its seq is assigned here) and returns the seq.
    pub(crate) fn push(&self, mut record: R) -> u64 {
        let seq = {
            let mut records = lock(&self.records);
            let seq = records.next_seq;
            records.next_seq += 1;
            record.set_seq(seq);
            records.list.push(record);
            seq
        };
        self.changes.send_modify(|v| *v += 1);
        seq
    }

    /// Changes one record in place (no-op if it was cleared meanwhile).
    pub(crate) fn update(&self, seq: u64, change: impl FnOnce(&mut R)) {
        {
            let mut records = lock(&self.records);
            match records.list.iter_mut().find(|r| r.seq() == seq) {
                Some(record) => change(record),
                None => return,
            }
        }
        self.changes.send_modify(|v| *v += 1);
    }

    /// Sets the outcome; with `only_if_pending`, a decided outcome is kept.
    pub(crate) fn finish(&self, seq: u64, outcome: Outcome, only_if_pending: bool) {
        let updated = {
            let mut records = lock(&self.records);
            let Some(record) = records.list.iter_mut().find(|r| r.seq() == seq) else {
                return;
            };
            if only_if_pending && record.outcome() != Outcome::Pending {
                return;
            }
            record.set_outcome(outcome);
            record.clone()
        };
        self.changes.send_modify(|v| *v += 1);
        if let Some(prefix) = self.echo {
            eprintln!("{prefix}: {}", updated.summary());
        }
    }

    pub(crate) fn snapshot(&self) -> Vec<R> {
        lock(&self.records).list.clone()
    }

    pub(crate) fn clear(&self) {
        lock(&self.records).list.clear();
        self.changes.send_modify(|v| *v += 1);
    }

    /// Waits until at least `n` records are in the log; returns all of them. `noun` names
    /// them in the error ("identity requests").
    pub(crate) async fn wait_for_count(
        &self,
        n: usize,
        timeout: Duration,
        noun: &str,
    ) -> anyhow::Result<Vec<R>> {
        self.wait_for(timeout, &format!("{n} {noun}"), |all| all.len() >= n)
            .await
    }

    /// Waits until `done` holds for the whole log; returns the log at that moment. Errs after
    /// `timeout` with the last records in the message.
    pub(crate) async fn wait_for(
        &self,
        timeout: Duration,
        what: &str,
        done: impl FnMut(&[R]) -> bool,
    ) -> anyhow::Result<Vec<R>> {
        // Subscribing before the first look means no change can slip in unseen.
        let changes = self.changes.subscribe();
        wait_for_log(
            changes,
            timeout,
            "the request log was dropped",
            || self.snapshot(),
            LogRecord::summary,
            done,
        )
        .await
        .with_context(|| format!("waiting for {what}"))
    }
}
