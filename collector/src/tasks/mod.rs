//! The long-running tasks: each a loop that reads the store, calls the
//! pure rooms (models) and writes back or alerts. Models never import a
//! task; the wiring (`cli/`) starts them.
//!
//! - [`alerting`]: routes, groups, mutes and delivers alerts; the
//!   notification log. [`conditions`]: alerts that hold or not.
//! - [`waivers`]: keeps the waivers in force current.
//! - [`slo`]: SLO and SLA conditions from the probes' minutes.
//! - [`scores`]: compliance scores and the controls catalog.
//! - [`silence`]: results of assets gone silent become `unknown`.
//! - [`roots`]: hourly Merkle roots of the evidence chains.
//! - [`retention`]: drops months past the retention.
//!
//! Two shapes repeat, so they are written once here: [`OnLeader`], the
//! passes of periodic work only the collector doing fleet-wide work runs,
//! and
//! [`Backoff`] / [`until_ok`], retrying what must eventually succeed.

pub mod alerting;
pub mod attestations;
pub mod conditions;
pub mod reports;
pub mod retention;
pub mod roots;
pub mod scores;
pub mod silence;
pub mod slo;
pub mod waivers;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Whether this collector does the fleet-wide work (the consumer-group
/// member that owns partition 0 of the SLA topic, or the only one).
pub type Leader = Arc<AtomicBool>;

/// One pass of an [`OnLeader`] task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    /// The first pass since this collector (re)gained leadership, or since
    /// the start: what a task caches about its own writes is stale.
    pub first: bool,
}

/// The passes of a periodic task that only the leader runs: every
/// `every`, the first `first_after` after the start (a moment for the
/// consumer group to pick its leader), skipped while this collector does
/// not lead. A pass that overruns delays the next (no burst to catch up).
///
/// ```ignore
/// let mut passes = OnLeader::new(every, Duration::ZERO, leader);
/// loop {
///     let pass = passes.next().await;
///     // one pass of the work
/// }
/// ```
pub struct OnLeader {
    tick: tokio::time::Interval,
    leader: Leader,
    leading: bool,
}

impl OnLeader {
    pub fn new(every: Duration, first_after: Duration, leader: Leader) -> Self {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + first_after, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        OnLeader { tick, leader, leading: false }
    }

    /// Whether this collector leads now (it may have stopped during a pass).
    pub fn leading(&self) -> bool {
        self.leader.load(Ordering::SeqCst)
    }

    /// Waits for the next pass this collector runs.
    pub async fn next(&mut self) -> Pass {
        loop {
            self.tick.tick().await;
            if !self.leader.load(Ordering::SeqCst) {
                self.leading = false;
                continue;
            }
            let first = !self.leading;
            self.leading = true;
            return Pass { first };
        }
    }
}

/// Waits between tries of something that must eventually succeed: 250 ms,
/// doubling up to 30 s.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(Duration::from_millis(250), Duration::from_secs(30))
    }
}

impl Backoff {
    pub fn new(first: Duration, max: Duration) -> Self {
        Backoff { next: first.min(max), max }
    }

    /// How long the next [`Self::wait`] sleeps.
    pub fn next_wait(&self) -> Duration {
        self.next
    }

    /// Sleeps, and makes the next wait twice as long (at most the maximum).
    pub async fn wait(&mut self) {
        tokio::time::sleep(self.next).await;
        self.next = (self.next * 2).min(self.max);
    }
}

/// Calls `op` until it succeeds, with a [`Backoff`] between tries; each
/// failure is logged as `what` failing. Only for what fails transiently
/// (a store or a broker not answering): a permanent error would be
/// retried forever, so callers that can be refused classify first (see
/// `ingest::persist`).
pub async fn until_ok<T, E, F, Fut>(what: &str, mut op: F) -> T
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut backoff = Backoff::default();
    loop {
        match op().await {
            Ok(v) => return v,
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = backoff.next_wait().as_millis() as u64, "{what} failed; retrying");
                backoff.wait().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_maximum() {
        let mut b = Backoff::new(Duration::from_millis(1), Duration::from_millis(5));
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let mut waits = Vec::new();
        for _ in 0..5 {
            waits.push(b.next_wait().as_millis());
            rt.block_on(b.wait());
        }
        assert_eq!(waits, [1, 2, 4, 5, 5]);
    }

    #[tokio::test(start_paused = true)]
    async fn until_ok_retries_until_the_operation_succeeds() {
        let mut tries = 0;
        let v: u32 = until_ok("test op", || {
            tries += 1;
            let t = tries;
            async move {
                if t < 4 {
                    Err("not yet")
                } else {
                    Ok(t)
                }
            }
        })
        .await;
        assert_eq!(v, 4);
    }

    #[tokio::test(start_paused = true)]
    async fn passes_run_only_while_leading_and_mark_each_first_one() {
        let leader: Leader = Arc::new(AtomicBool::new(false));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut passes = OnLeader::new(Duration::from_secs(10), Duration::from_secs(1), leader.clone());
        let task = tokio::spawn(async move {
            loop {
                let _ = tx.send(passes.next().await.first);
            }
        });
        tokio::time::sleep(Duration::from_secs(25)).await;
        assert!(rx.try_recv().is_err(), "no pass while not leading");
        leader.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert_eq!((rx.try_recv(), rx.try_recv()), (Ok(true), Ok(false)));
        leader.store(false, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert!(rx.try_recv().is_err(), "no pass once leadership is lost");
        leader.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(rx.try_recv(), Ok(true), "leadership regained: a first pass again");
        task.abort();
    }
}
