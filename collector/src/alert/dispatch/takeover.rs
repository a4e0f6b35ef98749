//! Taking groups over: what a (re)started collector, or one assigned
//! partitions, reads back into the dispatcher (the open violations and the
//! notification log: [`Dispatcher::reconcile`]), the groups held for a
//! second look at the log, and which assets' alerts this collector sends
//! ([`Dispatcher::own`]).

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};

use super::*;
use crate::store::records::NotificationRow;
use crate::store::{secs, time};

/// What was last sent for a group, as the notification log keeps it.
#[derive(Debug, Clone)]
pub struct Sent {
    pub receiver: String,
    pub group_key: String,
    pub at: DateTime<Utc>,
    /// Fingerprints notified firing.
    pub firing: BTreeSet<String>,
    /// The alerts notified firing (to resolve them after a restart).
    pub alerts: Vec<Alert>,
    pub escalation: bool,
}

impl Sent {
    /// The notification log's row of this send, with its status
    /// (`firing`, `resolved`, `sent`).
    pub fn row(&self, status: &str) -> NotificationRow {
        NotificationRow {
            receiver: self.receiver.clone(),
            group_key: self.group_key.clone(),
            sent_at: secs(&self.at),
            status: status.to_string(),
            escalation: u8::from(self.escalation),
            firing: self.firing.iter().cloned().collect(),
            alerts: serde_json::to_string(&self.alerts).unwrap_or_default(),
        }
    }

    /// A send as the notification log kept it.
    pub fn from_row(r: NotificationRow) -> Sent {
        Sent {
            receiver: r.receiver,
            group_key: r.group_key,
            at: time(r.sent_at),
            firing: r.firing.into_iter().collect(),
            // A log row this version can't read only loses its resolve.
            alerts: serde_json::from_str(&r.alerts).unwrap_or_default(),
            escalation: r.escalation != 0,
        }
    }
}

impl Dispatcher {
    /// Restores what the notification log says was sent, so that nothing
    /// is notified twice; groups of other alerts (SLO conditions, which
    /// their source re-sends) get their state when their first alert
    /// arrives. `resolve_closed`: also resolve notified violations that are
    /// not firing here (only right after adding every open one, see
    /// [`Self::reconcile`]).
    ///
    /// Returns the keys of the groups it queued such a resolve in.
    pub fn restore_with(&mut self, sent: Vec<Sent>, now: DateTime<Utc>, resolve_closed: bool) -> Vec<String> {
        let mut resolving = Vec::new();
        for s in sent {
            if s.escalation {
                match self.groups.get_mut(&s.group_key) {
                    Some(g) => g.escalated = !s.firing.is_empty(),
                    None if !s.firing.is_empty() => {
                        self.restored_escalations.insert(s.group_key.clone());
                    }
                    None => {}
                }
                continue;
            }
            // Alerts notified firing but not firing now were resolved while
            // the collector was down (one-shots just happened).
            for a in &s.alerts {
                let fp = a.fingerprint();
                let violation = a.labels.get("alertname").is_some_and(|n| n == "violation");
                if resolve_closed && violation && !a.one_shot && s.firing.contains(&fp) && !self.firing.contains_key(&fp) {
                    let mut resolved = a.clone();
                    resolved.ends_at = Some(now);
                    for route in self.route.matching(&a.labels) {
                        let key = route.group_key(&a.labels);
                        if key != s.group_key {
                            continue;
                        }
                        let g = self.groups.entry(key.clone()).or_insert_with(|| Group::new(route, &a.labels, now));
                        g.alerts.insert(fp.clone(), resolved.clone());
                        reschedule(&mut self.wakes, &key, g, now);
                        resolving.push(key);
                    }
                }
            }
            if let Some(g) = self.groups.get_mut(&s.group_key) {
                g.notified = s.firing.clone();
                g.last_sent = Some(s.at);
                g.next_flush = now;
                reschedule(&mut self.wakes, &s.group_key, g, now);
            } else {
                self.restored.insert(s.group_key.clone(), s);
            }
        }
        resolving
    }

    /// Takes the store's state after partitions were reassigned (or at
    /// start): `open` are the alerts of every open violation, `sent` the
    /// notification log. The store is the truth for every asset then: this
    /// collector's batches are stored before a reassignment is reported
    /// (their alerts reached the dispatcher as their records were
    /// evaluated, before it), and a page is logged only once the batch that
    /// raised it is stored.
    ///
    /// - a violation held firing here that is no longer open was closed
    ///   under another collector: it is dropped (its resolve, if notified,
    ///   is in the log, and the log decides below);
    /// - an open violation not held here is added: its page may have been
    ///   lost with the collector that raised it (sent once it is ours);
    /// - a log entry is applied to a group held here only when it is not
    ///   older than what the group last sent (the log is written after
    ///   delivery, in seconds: this collector's own latest sends are newer
    ///   than their entries); a violation an applied entry says was
    ///   notified firing, and that is not open, is resolved.
    ///
    /// Returns the keys of the open violations' groups that `sent` lacks
    /// (sorted): their pages may have been lost, or be logged a moment
    /// later (see [`Self::hold`]).
    pub fn reconcile(&mut self, open: Vec<Alert>, sent: Vec<Sent>, now: DateTime<Utc>) -> Vec<String> {
        let open: Vec<(String, Alert)> = open.into_iter().map(|a| (a.fingerprint(), a)).collect();
        let open_fps: HashSet<&str> = open.iter().map(|(fp, _)| fp.as_str()).collect();
        let stale: Vec<String> = self
            .firing
            .iter()
            .filter(|(fp, labels)| labels.get("alertname").is_some_and(|n| n == "violation") && !open_fps.contains(fp.as_str()))
            .map(|(fp, _)| fp.clone())
            .collect();
        for fp in &stale {
            self.firing.remove(fp);
        }
        if !stale.is_empty() {
            let stale: HashSet<&String> = stale.iter().collect();
            let wakes = &mut self.wakes;
            self.groups.retain(|key, g| {
                g.alerts.retain(|fp, _| !stale.contains(fp));
                let keep = !g.alerts.is_empty() || g.escalated;
                if !keep {
                    wakes.remove(&(g.wake, key.clone()));
                }
                keep
            });
        }
        let logged: HashSet<&str> = sent.iter().map(|s| s.group_key.as_str()).collect();
        let mut unlogged = HashSet::new();
        let mut note = |key: &String| {
            if !logged.contains(key.as_str()) {
                unlogged.insert(key.clone());
            }
        };
        for (fp, a) in open {
            if self.firing.contains_key(&fp) {
                self.group_keys(&a.labels).iter().for_each(&mut note);
            } else {
                self.add_with(a, fp, now, &mut note);
            }
        }
        // A resolve queued because the log's last word is a page may have
        // been sent by the previous owner and be logged a moment later:
        // held too, and looked at again.
        unlogged.extend(self.restore_newer(sent, now));
        let mut unlogged: Vec<String> = unlogged.into_iter().collect();
        unlogged.sort_unstable();
        unlogged
    }

    /// Applies the log entries not older than what their group last sent
    /// (see [`Self::reconcile`]).
    /// Returns the keys of the groups a resolve was queued in.
    fn restore_newer(&mut self, sent: Vec<Sent>, now: DateTime<Utc>) -> Vec<String> {
        let newer: Vec<Sent> =
            sent.into_iter().filter(|s| self.groups.get(&s.group_key).is_none_or(|g| g.last_sent.is_none_or(|t| s.at >= t))).collect();
        self.restore_with(newer, now, true)
    }

    /// Holds these groups: nothing is sent for them until [`Self::release`]
    /// (their page may be in the log a moment later: a collector that
    /// paged just before a rebalance may still be writing it). Groups held
    /// before and not now are looked at again.
    pub fn hold(&mut self, keys: &[String], now: DateTime<Utc>) {
        let before = std::mem::replace(&mut self.held, keys.iter().cloned().collect());
        for key in before.difference(&self.held) {
            if let Some(g) = self.groups.get_mut(key) {
                reschedule(&mut self.wakes, key, g, now);
            }
        }
    }

    /// The held groups' log, read again: applied as [`Self::reconcile`]
    /// applies the log, then the groups are looked at again (a group the
    /// log still lacks pages: its page was lost with a collector).
    pub fn release(&mut self, sent: Vec<Sent>, now: DateTime<Utc>) {
        self.restore_newer(sent, now);
        self.hold(&[], now);
    }

    /// Marks assets as processed here (their groups may notify): their
    /// parked groups are looked at with the next flush.
    pub fn own(&mut self, assets: impl IntoIterator<Item = String>) {
        for asset in assets {
            for key in self.parked.remove(&asset).unwrap_or_default() {
                if let Some(g) = self.groups.get_mut(&key) {
                    self.wakes.remove(&(g.wake, key.clone()));
                    g.wake = DateTime::<Utc>::MIN_UTC;
                    self.wakes.insert((g.wake, key));
                }
            }
            self.owned.insert(asset);
        }
    }

    /// Partitions were reassigned: no asset is known to be ours until its
    /// records arrive again.
    pub fn disown_all(&mut self) {
        self.owned.clear();
    }

    /// Group keys of a resolved alert that this dispatcher knows nothing
    /// about (no group, no restored log entry): its firing was notified by
    /// another collector or before a restart, and the log must be read
    /// before the resolve can be sent.
    pub fn unknown_groups(&self, alert: &Alert) -> Vec<String> {
        if !alert.is_resolved() {
            return Vec::new();
        }
        self.route
            .matching(&alert.labels)
            .into_iter()
            .map(|r| r.group_key(&alert.labels))
            .filter(|k| !self.groups.contains_key(k) && !self.restored.contains_key(k))
            .collect()
    }
}
