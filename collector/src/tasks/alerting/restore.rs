//! Taking the state: the open violations and the notification log read
//! into the dispatcher at start or at a partition assignment, and the
//! second look at the groups whose log may still be on its way.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use crate::alert::dispatch::{Dispatcher, Sent};
use crate::alert::guidance;
use crate::alert::model::Alert;
use crate::policy::PolicySet;
use crate::store::prelude::*;

/// Where the alerting task reads its state, what it annotates alerts
/// from, and where it publishes the conditions notified before the start.
pub(super) struct State {
    pub(super) store: SharedStore,
    /// The packs in force: each violation and drift alert, raised or
    /// restored, gets its control's fix line from them ([`guidance`]).
    pub(super) policies: tokio::sync::watch::Receiver<Arc<PolicySet>>,
    pub(super) conditions: tokio::sync::watch::Sender<Option<Arc<Vec<Alert>>>>,
}

impl State {
    /// `alert` with what to do about it, from the packs in force.
    pub(super) fn annotated(&self, mut alert: Alert) -> Alert {
        guidance::annotate(&mut alert, &self.policies.borrow());
        alert
    }
}

/// Reads the open violations and the notification log into the
/// dispatcher ([`Dispatcher::reconcile`]), retrying until the store
/// answers; the first time, publishes the conditions notified firing. A
/// collector that paged a moment ago may still be writing its log (a
/// rebalance or restart right after a page): the groups of open violations
/// the log lacks are held, to be looked up once more 2 s later
/// ([`recheck_state`]) before their violations are taken for pages lost in
/// a crash; everything else goes on at once.
pub(super) async fn take_state(dispatcher: &mut Dispatcher, state: &State) -> Option<Recheck> {
    let started = std::time::Instant::now();
    let (open, sent) = crate::tasks::until_ok("reading the alerting state (alerts wait)", || read_state(&state.store)).await;
    let open = open.into_iter().map(|a| state.annotated(a)).collect::<Vec<_>>();
    let conditions = &state.conditions;
    let read_ms = started.elapsed().as_millis() as u64;
    // Published once the held groups' log is read too.
    let notified = conditions.borrow().is_none().then(|| notified_conditions(&sent));
    let (open_violations, notified_groups) = (open.len(), sent.len());
    let now = Utc::now();
    let keys = dispatcher.reconcile(open, sent, now);
    dispatcher.hold(&keys, now);
    let applied_ms = started.elapsed().as_millis() as u64 - read_ms;
    tracing::info!(open_violations, notified_groups, held_groups = keys.len(), read_ms, applied_ms, "alerting state read");
    if keys.is_empty() {
        if let Some(notified) = notified {
            let _ = conditions.send(Some(Arc::new(notified)));
        }
        return None;
    }
    Some(Recheck { at: tokio::time::Instant::now() + RECHECK_AFTER, keys, notified })
}

/// How long after the state was read the held groups' log is read again.
pub(super) const RECHECK_AFTER: Duration = Duration::from_secs(2);

/// Groups held for a second look at the notification log, and the
/// conditions notified firing waiting to be published with it.
pub(super) struct Recheck {
    pub(super) at: tokio::time::Instant,
    pub(super) keys: Vec<String>,
    pub(super) notified: Option<Vec<Alert>>,
}

/// The second look at the held groups' log (see [`take_state`]): applied,
/// and the groups released; `Some` (to try again) when the store fails.
pub(super) async fn recheck_state(dispatcher: &mut Dispatcher, state: &State, mut r: Recheck) -> Option<Recheck> {
    let (store, conditions) = (&state.store, &state.conditions);
    let mut sent = Vec::new();
    // A bounded query each (a key list is part of the query's text).
    for keys in r.keys.chunks(1_000) {
        match store.notification_log_for(keys).await {
            Ok(s) => sent.extend(s.into_iter().map(Sent::from_row)),
            Err(e) => {
                tracing::error!(error = %e, "reading the notification log again failed; its groups stay held");
                r.at = tokio::time::Instant::now() + RECHECK_AFTER;
                return Some(r);
            }
        }
    }
    tracing::info!(groups = r.keys.len(), found = sent.len(), "held groups' notification log read again");
    if let Some(mut notified) = r.notified.take() {
        notified.extend(notified_conditions(&sent));
        let mut seen = HashSet::new();
        notified.retain(|a| seen.insert(a.fingerprint()));
        let _ = conditions.send(Some(Arc::new(notified)));
    }
    dispatcher.release(sent, Utc::now());
    None
}

/// The open violations' alerts and the notification log.
pub(super) async fn read_state(store: &SharedStore) -> Result<(Vec<Alert>, Vec<Sent>), crate::store::StoreError> {
    let open = store.open_violations().await?.into_iter().map(Alert::reopened).collect();
    Ok((open, store.notification_log().await?.into_iter().map(Sent::from_row).collect()))
}

/// Each condition alert notified firing in `sent`, once (violations and
/// drift are restored from the store's open violations instead).
pub(super) fn notified_conditions(sent: &[Sent]) -> Vec<Alert> {
    let mut seen = std::collections::HashSet::new();
    sent.iter()
        .flat_map(|s| &s.alerts)
        .filter(|a| !a.is_resolved() && a.labels.get("alertname").is_some_and(|n| n != "violation" && n != "drift"))
        .filter(|a| seen.insert(a.fingerprint()))
        .cloned()
        .collect()
}
