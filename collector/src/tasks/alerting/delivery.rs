//! Delivery: one task per receiver drains its queue (several
//! notifications in flight, one at a time per group, in order), and one
//! writer records what was delivered in the notification log, once the
//! batches that raised its alerts are stored.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::mpsc;

use super::{Batches, RECEIVER_QUEUE};
use crate::alert::dispatch::Sent;
use crate::receivers::{Notification, Receiver};
use crate::store::prelude::*;

/// Delivers a receiver's queue: up to its `max_in_flight` notifications at
/// once (a storm's tens of thousands would otherwise go one round trip at
/// a time), but one at a time per group, in the order queued (a group's
/// resolve never overtakes its page). Each delivered one is logged.
pub(super) async fn deliver(receiver: Receiver, mut rx: mpsc::Receiver<Notification>, log: mpsc::Sender<Delivered>, batches: Arc<Batches>) {
    use futures_util::stream::{FuturesUnordered, StreamExt};
    let receiver = Arc::new(receiver);
    let max_in_flight = receiver.max_in_flight;
    let one = |n: Notification| {
        let (receiver, log, batches) = (receiver.clone(), log.clone(), batches.clone());
        async move {
            if receiver.deliver(&n).await {
                // Its alerts were raised by the batch this names, or one before.
                let after_batch = batches.raised.load(std::sync::atomic::Ordering::Acquire);
                let sent = Sent {
                    receiver: n.receiver.clone(),
                    group_key: n.group_key.clone(),
                    at: Utc::now(),
                    firing: n.firing.iter().filter(|a| !a.one_shot).map(|a| a.fingerprint()).collect(),
                    alerts: n.firing.iter().filter(|a| !a.one_shot).cloned().collect(),
                    escalation: n.escalation,
                };
                let _ = log.send(Delivered { sent, status: n.status(), after_batch }).await;
            }
            n.group_key
        }
    };
    let mut in_flight = FuturesUnordered::new();
    // Groups with a notification in flight, and what waits behind it.
    let mut behind: HashMap<String, std::collections::VecDeque<Notification>> = HashMap::new();
    let mut open = true;
    while open || !in_flight.is_empty() {
        tokio::select! {
            n = rx.recv(), if open && in_flight.len() < max_in_flight => match n {
                Some(n) => match behind.get_mut(&n.group_key) {
                    Some(waiting) => waiting.push_back(n),
                    None => {
                        behind.insert(n.group_key.clone(), Default::default());
                        in_flight.push(one(n));
                    }
                },
                None => open = false,
            },
            Some(group) = in_flight.next() => match behind.get_mut(&group).and_then(|w| w.pop_front()) {
                Some(next) => in_flight.push(one(next)),
                None => {
                    behind.remove(&group);
                }
            },
        }
    }
}

/// The least time between two log writes: a burst of pages is one write
/// (and one ClickHouse part to merge), not one per page. The first page
/// after a quiet spell is written at once, so a lone page is logged as
/// soon as it is delivered; in a burst, a kill re-sends up to this much of
/// what was delivered after the restart (delivery is at least once).
pub(super) const LOG_SPACING: Duration = Duration::from_millis(200);

/// A delivered notification on its way to the log.
pub(super) struct Delivered {
    pub(super) sent: Sent,
    pub(super) status: &'static str,
    /// Logged once the pipeline's batches are stored up to this one (see
    /// [`Batches`]).
    pub(super) after_batch: u64,
}

/// Writes delivered notifications to the log, at most one write per
/// [`LOG_SPACING`], each once the batches that raised its alerts are
/// stored, retrying while the store is down (the log only prevents
/// repeats; delivery waits for it only when this queue is full). Ends once
/// every sender is gone and all is written.
pub(super) async fn write_log(store: SharedStore, mut rx: mpsc::Receiver<Delivered>, mut stored: tokio::sync::watch::Receiver<u64>) {
    let mut batch = Vec::new();
    let mut next_write = tokio::time::Instant::now();
    while gather(&mut rx, &mut batch, RECEIVER_QUEUE, next_write).await > 0 {
        let after = batch.iter().map(|d| d.after_batch).max().unwrap_or(0);
        // Err: the pipeline is gone (nothing more will be stored).
        let _ = stored.wait_for(|s| *s >= after).await;
        let rows: Vec<_> = batch.drain(..).map(|d| d.sent.row(d.status)).collect();
        crate::tasks::until_ok("recording notifications", || store.record_notifications(&rows)).await;
        next_write = tokio::time::Instant::now() + LOG_SPACING;
    }
}

/// Waits for a first item, then gathers into `batch` what else comes
/// until `not_before` (at once if that has passed; up to `max` in all).
/// Returns how many it holds: 0 once the channel is closed and empty.
pub(super) async fn gather<T>(rx: &mut mpsc::Receiver<T>, batch: &mut Vec<T>, max: usize, not_before: tokio::time::Instant) -> usize {
    if rx.recv_many(batch, max).await == 0 {
        return 0;
    }
    while batch.len() < max {
        match tokio::time::timeout_at(not_before, rx.recv_many(batch, max - batch.len())).await {
            Ok(0) | Err(_) => break, // closed, or time is up
            Ok(_) => {}
        }
    }
    batch.len()
}
