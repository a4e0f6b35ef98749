//! The alerting task: feeds alerts to the [`Dispatcher`], flushes it 2 ms
//! after alerts arrive and every second, hands notifications to one
//! delivery task per receiver (so a slow receiver delays only itself and
//! each keeps its order; never more than its queue takes: the rest stay
//! due in the dispatcher until there is room), and records delivered
//! notifications in the notification log (all waiting at once in one
//! write).
//!
//! It reads the open violations and the notification log at start (a
//! single collector) or whenever the consumer group assigns partitions,
//! the first assignment included (a group of collectors): the collector
//! does not wait for it (inputs queue, in order, and condition tasks wait
//! for the first log it read). An open violation never notified (its page
//! was lost in a crash, of this collector or of the one whose partitions it
//! took) is sent, a notified one is not sent again, one notified but no
//! longer open is resolved, and one held here that another collector closed
//! is dropped (see [`Dispatcher::reconcile`]). A resolve for a group this
//! collector holds nothing about reads that group's log first; an alert
//! that comes back as a new incident (a new violation) is notified anew
//! even if an older incident of it was held here. So a restart or a
//! rebalance neither loses a page nor repeats one, except a page delivered
//! by a collector that died before logging it (at-least-once: the page is
//! sent again, with the same PagerDuty dedup key).
//!
//! In a group of collectors, each asset's alerts are sent by the collector
//! that processes its records: the pipeline reports each asset at its first
//! record, and a rebalance forgets them until their records arrive again.
//! Groups of other collectors' assets stay quiet here (only a pure resolve
//! may be sent), so repeats and escalations fire once.

pub mod config;
mod delivery;
mod restore;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{mpsc, RwLock};

use crate::alert::dispatch::{Dispatcher, Sent};
use crate::alert::model::Alert;
use crate::alert::mute::Silence;
use crate::alert::route::Route;
use crate::receivers::{Notification, Receiver};
use crate::store::prelude::*;
pub use config::AlertsConfig;
use delivery::{deliver, write_log, Delivered};
use restore::{recheck_state, take_state, Recheck, State};

/// Alerts waiting for the dispatcher. Past it, alerts are dropped with an
/// error log rather than stalling ingestion.
const QUEUE: usize = 100_000;
/// Notifications waiting per receiver.
const RECEIVER_QUEUE: usize = 10_000;

/// What the pipeline tells the dispatcher, in order.
#[derive(Debug)]
enum Input {
    Alert(Alert),
    /// An asset whose records this collector just processed.
    Owned(String),
    /// Partitions were reassigned.
    Reassigned,
    /// The collector is stopping: hand over what is due (as the receivers'
    /// queues make room, until this instant), then stop.
    Stop(tokio::time::Instant),
}

/// When the alerting task first reads the store's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restore {
    /// At start: the collector consumes every record (single-node mode).
    AtStart,
    /// When partitions are assigned ([`Alerting::reassigned`]), the first
    /// time included: a consumer group, where assignments change what is
    /// this collector's and the store then holds what the previous owners did.
    AtAssignment,
}

/// The handle the pipeline sends alerts through.
#[derive(Clone)]
pub struct Alerting {
    tx: Option<mpsc::Sender<Input>>,
    /// Alerts of conditions (anything but violations and drift) notified
    /// firing before the start, from the log read at start: where the
    /// condition tasks start from, without reading the log again. `None`
    /// until the alerting task has restored its state.
    conditions: tokio::sync::watch::Receiver<Option<Arc<Vec<Alert>>>>,
    /// The notification log's writer: it ends once every receiver has
    /// delivered (or given up on) its queue and the log has it.
    logged: Arc<std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>>,
    batches: Arc<Batches>,
}

/// Which of the pipeline's batches raised alerts and which are stored. A
/// batch's violation alerts are raised as its records are evaluated, before
/// its rows are stored; a notification is logged only once every batch
/// that had raised alerts when it was delivered is stored. So the log never
/// names a page whose violation a restart cannot read back: after a crash
/// such a page is sent again when the batch is redelivered (at least once),
/// never taken for a violation closed meanwhile and resolved.
#[derive(Debug)]
struct Batches {
    /// The latest batch (by the pipeline's count of batches put in flight)
    /// that raised an alert.
    raised: std::sync::atomic::AtomicU64,
    /// The latest batch stored (batches are stored in order).
    stored: tokio::sync::watch::Sender<u64>,
}

impl Default for Batches {
    fn default() -> Self {
        Batches { raised: Default::default(), stored: tokio::sync::watch::channel(0).0 }
    }
}

impl Alerting {
    /// Alerting that only logs (no receivers configured).
    pub fn disabled() -> Self {
        Alerting {
            tx: None,
            conditions: tokio::sync::watch::channel(Some(Arc::default())).1,
            logged: Default::default(),
            batches: Default::default(),
        }
    }

    /// Starts the dispatcher and the receivers. Their state is read from
    /// `store` by the alerting task (see [`Restore`]) while the collector
    /// goes on starting: inputs sent meanwhile wait in its queue, in order.
    /// Violation and drift alerts get their control's fix line from the
    /// packs `policies` holds at the time.
    pub async fn start(
        cfg: &AlertsConfig,
        store: SharedStore,
        policies: tokio::sync::watch::Receiver<Arc<crate::policy::PolicySet>>,
        restore: Restore,
    ) -> anyhow::Result<Self> {
        let Some(route_cfg) = cfg.route_config() else {
            tracing::warn!("no alert receivers configured: violations are stored but nobody is notified");
            return Ok(Self::disabled());
        };
        let names: Vec<String> = cfg.receivers.iter().map(|r| r.name.clone()).collect();
        let route = Route::compile(&route_cfg, &names).map_err(|e| anyhow::anyhow!("alerts.route: {}", e.join("; ")))?;
        let batches = Arc::new(Batches::default());
        let (log_tx, log_rx) = mpsc::channel::<Delivered>(RECEIVER_QUEUE);
        let logged = tokio::spawn(write_log(store.clone(), log_rx, batches.stored.subscribe()));
        let mut queues = HashMap::new();
        for rc in &cfg.receivers {
            let receiver = Receiver::new(rc)?;
            let (tx, rx) = mpsc::channel(RECEIVER_QUEUE);
            tokio::spawn(deliver(receiver, rx, log_tx.clone(), batches.clone()));
            queues.insert(rc.name.clone(), tx);
        }
        let silences = Arc::new(RwLock::new(Silence::from_rows(store.silences().await?)));
        tokio::spawn(refresh_silences(store.clone(), silences.clone(), Duration::from_secs(cfg.silence_refresh_secs.max(1))));
        let dispatcher = Dispatcher::new(route, cfg.inhibit_rules.clone(), cfg.maintenance_windows.clone(), cfg.external_url.clone());
        let (tx, rx) = mpsc::channel(QUEUE);
        let (conditions_tx, conditions) = tokio::sync::watch::channel(None);
        let state = State { store, policies, conditions: conditions_tx };
        tokio::spawn(async move {
            let mut dispatcher = dispatcher;
            let recheck = if restore == Restore::AtStart { take_state(&mut dispatcher, &state).await } else { None };
            run(dispatcher, rx, queues, silences, state, recheck).await
        });
        Ok(Alerting { tx: Some(tx), conditions, logged: Arc::new(std::sync::Mutex::new(Some(logged))), batches })
    }

    /// At a graceful stop, once the last batch is stored: hands every
    /// notification that is due to its receiver (more than its queue holds
    /// after a storm: the rest as it delivers), and waits up to `within`
    /// for the receivers to deliver them and the log to record them (what
    /// is not logged is sent again after the restart, all at once: left
    /// for then, a storm's pages would delay the first live ones).
    /// Alerting stops.
    pub async fn stop(&self, within: Duration) {
        let Some(tx) = &self.tx else { return };
        let until = tokio::time::Instant::now() + within;
        if tx.send(Input::Stop(until)).await.is_err() {
            return;
        }
        let logged = self.logged.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = logged {
            if tokio::time::timeout_at(until, task).await.is_err() {
                tracing::warn!(
                    within_secs = within.as_secs(),
                    "notifications still being delivered at the stop; those not logged are sent again after the restart"
                );
            }
        }
    }

    /// The alerts of `alertnames` notified firing before the start (the
    /// notification log as read at start); waits for alerting to have read
    /// it.
    pub async fn notified(&self, alertnames: &[&str]) -> Vec<Alert> {
        let mut rx = self.conditions.clone();
        let Ok(conditions) = rx.wait_for(Option::is_some).await.map(|c| c.clone().unwrap_or_default()) else { return Vec::new() };
        conditions.iter().filter(|a| a.labels.get("alertname").is_some_and(|n| alertnames.contains(&n.as_str()))).cloned().collect()
    }

    /// Queues an alert for routing.
    pub fn send(&self, alert: Alert) {
        if self.tx.is_none() {
            tracing::info!(alert = ?alert.labels, resolved = alert.is_resolved(), "alert (no receivers configured)");
        }
        self.input(Input::Alert(alert));
    }

    /// Tells the dispatcher that this collector processes `asset` (its
    /// alerts are this collector's to send); call before sending them.
    pub fn owned(&self, asset: &str) {
        self.input(Input::Owned(asset.to_string()));
    }

    /// The alerts sent from now on come from batch `batch` (the pipeline's
    /// count of batches put in flight, this one included), not yet stored:
    /// notifications delivered from now on are logged once it is.
    pub fn raising(&self, batch: u64) {
        self.batches.raised.fetch_max(batch, std::sync::atomic::Ordering::AcqRel);
    }

    /// Batch `batch` is stored (and every one before it).
    pub fn stored(&self, batch: u64) {
        self.batches.stored.send_if_modified(|s| {
            let newer = batch > *s;
            *s = (*s).max(batch);
            newer
        });
    }

    /// Tells the dispatcher that partitions were reassigned (after the
    /// batches of the previous assignment were stored): it reads the
    /// store's state again.
    pub fn reassigned(&self) {
        self.input(Input::Reassigned);
    }

    fn input(&self, i: Input) {
        if let Some(tx) = &self.tx {
            if let Err(e) = tx.try_send(i) {
                tracing::error!(error = %e, "alerting input dropped: dispatcher queue full or stopped");
            }
        }
    }
}

/// Resolves at `at`; never without one.
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// How soon after an alert arrives the dispatcher is flushed: groups with
/// no `group_wait` go out at once (the alerts of one snapshot, queued
/// together, still share a notification), the others when their timers say.
const SOON: Duration = Duration::from_millis(2);

async fn run(
    mut dispatcher: Dispatcher,
    mut rx: mpsc::Receiver<Input>,
    queues: HashMap<String, mpsc::Sender<Notification>>,
    silences: Arc<RwLock<Vec<Silence>>>,
    state: State,
    mut recheck: Option<Recheck>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut soon: Option<tokio::time::Instant> = None;
    loop {
        let flush_soon = sleep_until_some(soon);
        let recheck_due = sleep_until_some(recheck.as_ref().map(|r| r.at));
        tokio::select! {
            input = rx.recv() => match input {
                Some(Input::Owned(asset)) => dispatcher.own([asset]),
                Some(Input::Reassigned) => {
                    dispatcher.disown_all();
                    recheck = take_state(&mut dispatcher, &state).await;
                }
                // Dropping the queues lets each receiver finish its own,
                // then the log writer ends.
                Some(Input::Stop(until)) => {
                    drain(&mut dispatcher, &silences, &queues, until).await;
                    break;
                }
                Some(Input::Alert(a)) => {
                    let a = state.annotated(a);
                    // A resolve of a group notified elsewhere (another
                    // collector, before a restart): read its log first.
                    let unknown = dispatcher.unknown_groups(&a);
                    if !unknown.is_empty() {
                        match state.store.notification_log_for(&unknown).await {
                            Ok(sent) => {
                                dispatcher.restore_with(sent.into_iter().map(Sent::from_row).collect(), Utc::now(), false);
                            }
                            Err(e) => tracing::warn!(error = %e, "reading the notification log for a resolve failed; it may not be sent"),
                        }
                    }
                    dispatcher.add(a, Utc::now());
                    soon.get_or_insert_with(|| tokio::time::Instant::now() + SOON);
                }
                None => break,
            },
            () = flush_soon => {
                soon = None;
                send_due(&mut dispatcher, &silences, &queues).await;
            }
            () = recheck_due => {
                if let Some(r) = recheck.take() {
                    recheck = recheck_state(&mut dispatcher, &state, r).await;
                    send_due(&mut dispatcher, &silences, &queues).await;
                }
            }
            _ = tick.tick() => send_due(&mut dispatcher, &silences, &queues).await,
        }
    }
}

/// Hands every notification that is due to its receiver's queue.
async fn send_due(dispatcher: &mut Dispatcher, silences: &RwLock<Vec<Silence>>, queues: &HashMap<String, mpsc::Sender<Notification>>) {
    let s = silences.read().await.clone();
    // Only as many as each receiver's queue takes now; the rest stay due.
    let mut room: HashMap<String, usize> = queues.iter().map(|(name, q)| (name.clone(), q.capacity())).collect();
    for n in dispatcher.flush_within(Utc::now(), &s, &mut room) {
        match queues.get(&n.receiver) {
            Some(q) => {
                if let Err(e) = q.try_send(n) {
                    tracing::error!(error = %e, "notification dropped: receiver stopped");
                }
            }
            None => tracing::error!(receiver = %n.receiver, "notification for an unknown receiver"),
        }
    }
}

/// How often a stopping dispatcher looks for room in full queues.
const DRAIN_POLL: Duration = Duration::from_millis(20);

/// Hands over everything due, as the receivers' queues make room, until
/// nothing is due, or what is due waits for no queue (a group due again at
/// once, with a zero `group_interval`, and nothing new to say), or `until`.
async fn drain(
    dispatcher: &mut Dispatcher,
    silences: &RwLock<Vec<Silence>>,
    queues: &HashMap<String, mpsc::Sender<Notification>>,
    until: tokio::time::Instant,
) {
    loop {
        send_due(dispatcher, silences, queues).await;
        let waiting_for_room = queues.values().any(|q| q.capacity() == 0);
        if !dispatcher.has_due(Utc::now()) || !waiting_for_room || tokio::time::Instant::now() >= until {
            return;
        }
        tokio::time::sleep(DRAIN_POLL.min(until.saturating_duration_since(tokio::time::Instant::now()))).await;
    }
}

async fn refresh_silences(store: SharedStore, silences: Arc<RwLock<Vec<Silence>>>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        match store.silences().await {
            Ok(s) => *silences.write().await = Silence::from_rows(s),
            Err(e) => tracing::warn!(error = %e, "reading silences failed; keeping the previous ones"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::delivery::gather;
    use super::restore::notified_conditions;
    use super::*;
    use crate::alert::notification::tests::alert;

    fn named(name: &str, asset: &str, resolved: bool) -> Alert {
        let mut a = alert(asset, "high", resolved);
        a.labels.insert("alertname".into(), name.into());
        a
    }

    fn sent(alerts: Vec<Alert>) -> Sent {
        Sent {
            receiver: "slack".into(),
            group_key: format!("g-{}", alerts.len()),
            at: Utc::now(),
            firing: alerts.iter().map(Alert::fingerprint).collect(),
            alerts,
            escalation: false,
        }
    }

    /// The log writer takes a lone item at once, gathers a burst until its
    /// next write is due, and ends once the senders are gone.
    #[tokio::test(start_paused = true)]
    async fn the_log_writer_gathers_a_burst() {
        use tokio::time::Instant;
        let (tx, mut rx) = mpsc::channel(100);
        tokio::spawn(async move {
            for i in 0..3 {
                tx.send(i).await.unwrap();
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            tx.send(3).await.unwrap();
        });
        let mut batch = Vec::new();
        let start = Instant::now();
        assert_eq!(gather(&mut rx, &mut batch, 100, start).await, 1, "due already: the first alone");
        assert_eq!(Instant::now(), start, "and at once");
        batch.clear();
        assert_eq!(gather(&mut rx, &mut batch, 100, start + Duration::from_millis(200)).await, 2);
        assert_eq!(batch, [1, 2], "the rest of the burst, until the write is due");
        batch.clear();
        assert_eq!(gather(&mut rx, &mut batch, 100, Instant::now()).await, 1, "the late one, then closed");
        batch.clear();
        assert_eq!(gather(&mut rx, &mut batch, 100, Instant::now()).await, 0);
    }

    /// A page raised by a batch not yet stored is logged only once that
    /// batch is: logged before, a crash would leave a log naming a
    /// violation the store lacks, and the restart would resolve it.
    #[tokio::test]
    async fn a_page_is_logged_once_the_batch_that_raised_it_is_stored() {
        let (_dir, sqlite) = crate::store::sqlite::tests::store();
        let store: SharedStore = Arc::new(sqlite);
        let alerting = Alerting::disabled();
        let (tx, rx) = mpsc::channel(10);
        let writer = tokio::spawn(write_log(store.clone(), rx, alerting.batches.stored.subscribe()));
        alerting.stored(1);
        alerting.raising(2);
        let after_batch = alerting.batches.raised.load(std::sync::atomic::Ordering::Acquire);
        tx.send(Delivered { sent: sent(vec![named("violation", "web-1", false)]), status: "firing", after_batch }).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(store.notification_log().await.unwrap().is_empty(), "batch 2 is not stored yet");
        alerting.stored(2);
        drop(tx);
        tokio::time::timeout(Duration::from_secs(10), writer).await.expect("written once batch 2 is stored").unwrap();
        assert_eq!(store.notification_log().await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn conditions_notified_firing_are_restored_once_and_by_name() {
        let log = vec![
            sent(vec![named("slo_burn", "web-1", false), named("violation", "web-1", false)]),
            // The same condition in a second group (another route), a
            // resolved one, drift: none of them counts twice or at all.
            sent(vec![named("slo_burn", "web-1", false), named("slo_burn", "web-2", true), named("drift", "web-2", false)]),
            sent(vec![named("waiver_expiring", "db-1", false)]),
        ];
        let alerting = Alerting {
            tx: None,
            conditions: tokio::sync::watch::channel(Some(Arc::new(notified_conditions(&log)))).1,
            logged: Default::default(),
            batches: Default::default(),
        };
        let slo = alerting.notified(&["slo_burn", "sla_breach"]).await;
        assert_eq!(slo.len(), 1, "{slo:?}");
        assert_eq!(slo[0].labels["asset"], "web-1");
        let waivers = alerting.notified(&["waiver_expiring"]).await;
        assert_eq!(waivers.len(), 1);
        assert!(alerting.notified(&["violation", "drift"]).await.is_empty(), "violations are restored from open violations");
    }
    /// An open violation whose page the previous owner logs a moment after
    /// the state was first read is found by the second look, not taken
    /// for a page lost in a crash (and sent again); one whose page is not
    /// in the log then is paged. Meanwhile its group is held, and nothing
    /// else waits for the second look.
    #[tokio::test]
    async fn a_page_logged_a_moment_late_is_found_by_the_second_look() {
        let (_dir, sqlite) = crate::store::sqlite::tests::store();
        let store: SharedStore = Arc::new(sqlite);
        for (asset, id) in [("web-1", "v1"), ("web-2", "v2")] {
            let mut b = crate::store::sqlite::tests::opening(asset);
            b.violations[0].violation_id = id.into();
            store.write(&b).await.unwrap();
        }
        let route =
            Route::compile(&serde_yaml::from_str("receiver: slack\ngroup_by: [asset]\ngroup_wait: 0s").unwrap(), &["slack".to_string()])
                .unwrap();
        let mut dispatcher = Dispatcher::new(route, Vec::new(), Vec::new(), "http://x".into());
        let open: Vec<Alert> = store.open_violations().await.unwrap().into_iter().map(Alert::reopened).collect();
        let late = open.iter().find(|a| a.labels["asset"] == "web-1").unwrap().clone();
        let key = dispatcher.group_keys(&late.labels).remove(0);
        let page = Sent {
            receiver: "slack".into(),
            group_key: key.clone(),
            at: Utc::now(),
            firing: [late.fingerprint()].into(),
            alerts: vec![late],
            escalation: false,
        };
        let (conditions, _rx) = tokio::sync::watch::channel(None);
        let policies = tokio::sync::watch::channel(Arc::new(crate::policy::PolicySet::new(Vec::new()))).1;
        let state = State { store: store.clone(), policies, conditions };
        let r = take_state(&mut dispatcher, &state).await.expect("two groups the log lacks: held");
        let conditions = &state.conditions;
        assert_eq!(r.keys.len(), 2);
        dispatcher.own(["web-1".to_string(), "web-2".to_string()]);
        assert!(dispatcher.flush(Utc::now(), &[]).is_empty(), "held groups send nothing");
        assert!(conditions.borrow().is_none(), "the conditions wait for the second look");
        // The previous owner's log lands; the second look finds it.
        store.record_notifications(&[page.row("firing")]).await.unwrap();
        assert!(recheck_state(&mut dispatcher, &state, r).await.is_none());
        assert!(conditions.borrow().is_some());
        let sent = dispatcher.flush(Utc::now(), &[]);
        let assets: Vec<&str> = sent.iter().flat_map(|n| &n.firing).map(|a| a.labels["asset"].as_str()).collect();
        assert_eq!(assets, ["web-2"], "only the page the log still lacks is sent: {sent:?}");
    }

    /// A stop after a storm hands over every page due, more than the
    /// receiver's queue holds, as the receiver makes room (left for the
    /// restart, they would all go out at once then, before its first live
    /// pages); what is not due yet stays.
    #[tokio::test]
    async fn a_stop_hands_over_more_than_a_queue_holds() {
        let route =
            Route::compile(&serde_yaml::from_str("receiver: slack\ngroup_by: [asset]\ngroup_wait: 0s").unwrap(), &["slack".to_string()])
                .unwrap();
        let mut dispatcher = Dispatcher::new(route, Vec::new(), Vec::new(), "http://x".into());
        let assets: Vec<String> = (0..30).map(|i| format!("web-{i}")).collect();
        dispatcher.own(assets.clone());
        for a in &assets {
            dispatcher.add(named("violation", a, false), Utc::now());
        }
        let (tx, mut rx) = mpsc::channel::<Notification>(4);
        let receiver = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(n) = rx.recv().await {
                got.push(n.group_key);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            got
        });
        let queues = HashMap::from([("slack".to_string(), tx)]);
        let silences = RwLock::new(Vec::new());
        drain(&mut dispatcher, &silences, &queues, tokio::time::Instant::now() + Duration::from_secs(10)).await;
        assert!(!dispatcher.has_due(Utc::now()));
        drop(queues);
        let got = receiver.await.unwrap();
        assert_eq!(got.len(), 30, "every group, though the queue holds 4");
        assert_eq!(got.iter().collect::<std::collections::BTreeSet<_>>().len(), 30, "each once");

        // With no time left, only what the queue takes now.
        dispatcher.add(named("violation", "web-30", false), Utc::now());
        dispatcher.add(named("violation", "web-31", false), Utc::now());
        dispatcher.own(["web-30".to_string(), "web-31".to_string()]);
        let (tx, mut rx) = mpsc::channel(1);
        let queues = HashMap::from([("slack".to_string(), tx)]);
        drain(&mut dispatcher, &silences, &queues, tokio::time::Instant::now()).await;
        assert!(dispatcher.has_due(Utc::now()), "one left due, for the restart");
        drop(queues);
        assert!(rx.recv().await.is_some() && rx.recv().await.is_none());

        // A group due again at once (silenced, no group_interval: looked at
        // every flush, in case its silence ended) does not hold the stop
        // until its bound.
        let route = Route::compile(
            &serde_yaml::from_str("receiver: slack\ngroup_by: [asset]\ngroup_wait: 0s\ngroup_interval: 0s").unwrap(),
            &["slack".to_string()],
        )
        .unwrap();
        let mut dispatcher = Dispatcher::new(route, Vec::new(), Vec::new(), "http://x".into());
        dispatcher.own(["web-1".to_string()]);
        dispatcher.add(named("violation", "web-1", false), Utc::now());
        let silences = RwLock::new(vec![Silence {
            id: "s1".into(),
            matchers: vec![crate::alert::matcher::Matcher::parse("asset=web-1").unwrap()],
            starts_at: Utc::now() - chrono::Duration::minutes(1),
            ends_at: Utc::now() + chrono::Duration::hours(1),
            created_by: "alice".into(),
            comment: "maintenance".into(),
        }]);
        let (tx, mut rx) = mpsc::channel::<Notification>(4);
        let queues = HashMap::from([("slack".to_string(), tx)]);
        let start = tokio::time::Instant::now();
        drain(&mut dispatcher, &silences, &queues, start + Duration::from_secs(10)).await;
        assert!(dispatcher.has_due(Utc::now()), "due again at once");
        assert!(start.elapsed() < Duration::from_secs(5), "but the stop went on: {:?}", start.elapsed());
        drop(queues);
        assert!(rx.recv().await.is_none(), "silenced: nothing sent");
    }

    /// A receiver's queue goes out several requests at a time, but each
    /// group's notifications one at a time and in order.
    #[tokio::test]
    async fn a_receiver_delivers_several_groups_at_once_and_each_group_in_order() {
        #[derive(Default)]
        struct Seen {
            now: usize,
            most: usize,
            groups_now: HashMap<String, usize>,
            overlapped: bool,
            order: Vec<(String, String)>,
        }
        type Shared = Arc<std::sync::Mutex<Seen>>;
        // Takes 50 ms a request, noting how many overlap, in all and per group.
        async fn hook(axum::extract::State(seen): axum::extract::State<Shared>, axum::Json(v): axum::Json<serde_json::Value>) {
            let group = v["groupKey"].as_str().unwrap_or_default().to_string();
            {
                let mut s = seen.lock().unwrap();
                s.now += 1;
                s.most = s.most.max(s.now);
                let n = s.groups_now.entry(group.clone()).or_default();
                *n += 1;
                s.overlapped |= *n > 1;
                s.order.push((group.clone(), v["status"].as_str().unwrap_or_default().to_string()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            let mut s = seen.lock().unwrap();
            s.now -= 1;
            *s.groups_now.entry(group).or_default() -= 1;
        }
        let seen: Shared = Default::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let app = axum::Router::new().route("/hook", axum::routing::post(hook)).with_state(seen.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let cfg: crate::receivers::ReceiverConfig =
            serde_yaml::from_str(&format!("name: hook\nwebhook: {{url: \"{url}\"}}\nrate_limit_per_minute: 100000\nmax_in_flight: 4"))
                .unwrap();
        let (tx, rx) = mpsc::channel(100);
        let (log_tx, mut log_rx) = mpsc::channel(100);
        let task = tokio::spawn(deliver(Receiver::new(&cfg).unwrap(), rx, log_tx, Default::default()));
        let notify = |group: &str, resolved: bool| {
            let a = named("violation", group, resolved);
            let (firing, resolved) = if resolved { (vec![], vec![a]) } else { (vec![a], vec![]) };
            Notification {
                receiver: "hook".into(),
                group_key: group.into(),
                group_labels: Default::default(),
                firing,
                resolved,
                escalation: false,
                external_url: "http://x".into(),
            }
        };
        for g in ["g1", "g2", "g3", "g4", "g5", "g6"] {
            tx.send(notify(g, false)).await.unwrap();
        }
        tx.send(notify("g1", true)).await.unwrap();
        tx.send(notify("g1", false)).await.unwrap();
        drop(tx);
        task.await.unwrap();
        let s = seen.lock().unwrap();
        assert_eq!(s.order.len(), 8);
        assert!(s.most > 1 && s.most <= 4, "several at once, at most max_in_flight: {}", s.most);
        assert!(!s.overlapped, "never two of one group at once");
        let g1: Vec<&str> = s.order.iter().filter(|(g, _)| g == "g1").map(|(_, st)| st.as_str()).collect();
        assert_eq!(g1, ["firing", "resolved", "firing"], "a group's in the order queued");
        let mut logged = 0;
        while log_rx.try_recv().is_ok() {
            logged += 1;
        }
        assert_eq!(logged, 8, "each delivered one logged");
    }
}
