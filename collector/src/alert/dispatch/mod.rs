//! The dispatcher: alerts in, notifications out — Alertmanager's model.
//!
//! Each alert is routed ([`Route::matching`]) into groups (one per route and
//! value of its `group_by` labels). A new group waits `group_wait` for
//! company, then notifies; afterwards it is looked at every
//! `group_interval` and notifies again only if its firing set changed or
//! alerts resolved — or, unchanged and still firing, once `repeat_interval`
//! has passed since the last notification. Silenced, in-maintenance and
//! inhibited alerts are left out of notifications; a resolve is only sent
//! for an alert that was notified firing. A route's escalation sends the
//! group to a further receiver once it has fired that long, and its resolve
//! too.
//!
//! [`Dispatcher`] is synchronous and takes the time as an argument, so its
//! behaviour is tested without clocks; `crate::tasks::alerting` drives it. Each group
//! has one wake-up time (its next flush, or its escalation if sooner) in an
//! ordered set, so a flush looks only at the groups that are due, and a
//! group that did not change costs a look at its alerts, not a copy.

mod takeover;

pub use takeover::Sent;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};

use super::matcher::Labels;
use super::model::Alert;
use super::mute::{InhibitRule, Inhibition, MaintenanceWindow, Silence};
use super::notification::Notification;
use super::route::Route;

#[derive(Debug)]
struct Group {
    receiver: String,
    /// The labels the group is by; `None` when grouped by every label
    /// (the labels of its one alert, not kept twice).
    labels: Option<Labels>,
    group_interval: Duration,
    repeat_interval: Duration,
    escalate: Option<(Duration, String)>,
    alerts: BTreeMap<String, Alert>,
    next_flush: DateTime<Utc>,
    notified: BTreeSet<String>,
    last_sent: Option<DateTime<Utc>>,
    escalated: bool,
    /// When the group is next looked at (its entry in `Dispatcher::wakes`).
    wake: DateTime<Utc>,
    /// Everything firing was notified and nothing is muted: nothing can
    /// change until an alert comes or goes (which reschedules the group),
    /// so it sleeps until its repeat or escalation rather than waking
    /// every `group_interval`. A muted alert keeps its group waking: its
    /// silence, window or inhibition may end.
    quiet: bool,
}

fn dur(d: std::time::Duration) -> Duration {
    Duration::from_std(d).unwrap_or(Duration::MAX)
}

impl Group {
    /// When the group must next be looked at, after `now`: its flush, or
    /// the moment an alert has fired long enough to escalate if sooner (an
    /// escalation already due but muted is looked at again with the flush).
    fn next_wake(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let flush = match self.last_sent {
            Some(t) if self.quiet => (t + self.repeat_interval).max(self.next_flush),
            _ => self.next_flush,
        };
        let escalation = match &self.escalate {
            Some((after, _)) if !self.escalated => {
                self.alerts.values().filter(|a| !a.is_resolved() && !a.one_shot).map(|a| a.starts_at + *after).min()
            }
            _ => None,
        };
        match escalation {
            Some(at) if at > now => at.min(flush),
            _ => flush,
        }
    }

    /// An empty group of `route` for an alert with `labels`, first looked
    /// at `next_flush`.
    fn new(route: &Route, labels: &Labels, next_flush: DateTime<Utc>) -> Group {
        Group {
            receiver: route.receiver.clone(),
            labels: (!route.groups_by_all()).then(|| route.group_labels(labels)),
            group_interval: dur(route.group_interval),
            repeat_interval: dur(route.repeat_interval),
            escalate: route.escalate.as_ref().map(|(d, r)| (dur(*d), r.clone())),
            alerts: BTreeMap::new(),
            next_flush,
            notified: BTreeSet::new(),
            last_sent: None,
            escalated: false,
            wake: next_flush,
            quiet: false,
        }
    }

    /// The labels the group is by.
    fn labels(&self) -> &Labels {
        static NONE: Labels = Labels::new();
        self.labels.as_ref().or_else(|| self.alerts.values().next().map(|a| &a.labels)).unwrap_or(&NONE)
    }
}

/// Moves `g`'s entry in `wakes` to its next wake-up after `now`, after a
/// change (the group is no longer quiet).
fn reschedule(wakes: &mut BTreeSet<(DateTime<Utc>, String)>, key: &str, g: &mut Group, now: DateTime<Utc>) {
    g.quiet = false;
    let mut entry = (g.wake, key.to_string());
    wakes.remove(&entry); // absent for a new group
    entry.0 = g.next_wake(now);
    g.wake = entry.0;
    wakes.insert(entry);
}

/// Groups and their state.
pub struct Dispatcher {
    route: Route,
    /// Every receiver the routes send to (escalations too): with room for
    /// none of them, a flush has nothing it could send.
    receivers: BTreeSet<String>,
    inhibit: Vec<InhibitRule>,
    windows: Vec<MaintenanceWindow>,
    external_url: String,
    groups: HashMap<String, Group>,
    /// Every group's key by its wake-up time.
    wakes: BTreeSet<(DateTime<Utc>, String)>,
    /// Firing alerts by fingerprint (sources for inhibition).
    firing: HashMap<String, Labels>,
    /// Logged notifications of groups that don't exist yet: applied when
    /// their first alert arrives (alerts whose source re-sends them after a
    /// restart, e.g. SLO conditions).
    restored: HashMap<String, Sent>,
    /// Assets this collector processed since its partitions were last
    /// assigned: only their violation and drift groups may page, repeat or
    /// escalate here (the others belong to another collector of the group).
    owned: std::collections::HashSet<String>,
    /// Groups with something firing on an asset not owned here, by that
    /// asset: looked at again once it is ([`Self::own`]), not before.
    parked: HashMap<String, Vec<String>>,
    /// Groups the log says were escalated (applied when they appear).
    restored_escalations: std::collections::HashSet<String>,
    /// Groups of open violations the notification log did not have when
    /// the state was read: nothing is sent for them until the log is read
    /// again ([`Self::hold`], [`Self::release`]).
    held: std::collections::HashSet<String>,
}

impl Dispatcher {
    pub fn new(route: Route, inhibit: Vec<InhibitRule>, windows: Vec<MaintenanceWindow>, external_url: String) -> Self {
        let receivers =
            route.walk().iter().flat_map(|r| std::iter::once(&r.receiver).chain(r.escalate.as_ref().map(|(_, e)| e))).cloned().collect();
        Dispatcher {
            route,
            receivers,
            inhibit,
            windows,
            external_url,
            groups: HashMap::new(),
            wakes: BTreeSet::new(),
            firing: HashMap::new(),
            restored: HashMap::new(),
            owned: Default::default(),
            parked: HashMap::new(),
            restored_escalations: Default::default(),
            held: Default::default(),
        }
    }

    /// Takes in a new or updated alert (a resolve carries `ends_at`).
    pub fn add(&mut self, alert: Alert, now: DateTime<Utc>) {
        let fp = alert.fingerprint();
        self.add_with(alert, fp, now, |_| {});
    }

    /// [`Self::add`] of an alert whose fingerprint is `fp`, telling
    /// `routed` the key of each group it joins.
    fn add_with(&mut self, alert: Alert, fp: String, now: DateTime<Utc>, mut routed: impl FnMut(&String)) {
        if alert.is_resolved() || alert.one_shot {
            self.firing.remove(&fp);
        } else {
            self.firing.insert(fp.clone(), alert.labels.clone());
        }
        // Fields apart: the route tree is read while groups change.
        let (groups, wakes, restored, restored_escalations) =
            (&mut self.groups, &mut self.wakes, &mut self.restored, &mut self.restored_escalations);
        let routes = self.route.matching(&alert.labels);
        let last = routes.len().saturating_sub(1);
        let mut alert = Some(alert);
        for (i, route) in routes.into_iter().enumerate() {
            let Some(a) = alert.as_ref() else { break };
            let key = route.group_key(&a.labels);
            let known = groups.get(&key).is_some_and(|g| g.alerts.contains_key(&fp) || g.notified.contains(&fp))
                || restored.get(&key).is_some_and(|s| s.firing.contains(&fp));
            if a.is_resolved() && !known {
                continue; // never notified firing: nothing to resolve
            }
            let g = groups.entry(key.clone()).or_insert_with_key(|key| {
                let restored = restored.remove(key);
                let mut g = Group::new(route, &a.labels, now + dur(route.group_wait));
                g.notified = restored.as_ref().map(|s| s.firing.clone()).unwrap_or_default();
                g.last_sent = restored.as_ref().map(|s| s.at);
                g.escalated = restored_escalations.remove(key);
                g
            });
            // A group already notified is looked at again after
            // group_interval, not sooner.
            if let Some(last) = g.last_sent {
                g.next_flush = g.next_flush.min((last + g.group_interval).max(now));
            }
            // The same alert as a new incident (its previous one closed
            // elsewhere, e.g. under another collector, or its resolve still
            // waiting here): notify it anew. A resolve still waiting is
            // superseded by the new incident's page; were `notified` kept,
            // the new incident would look already paged and go unsent.
            if g.alerts.get(&fp).is_some_and(|old| old.instance != a.instance && !a.is_resolved()) {
                g.notified.remove(&fp);
            }
            // The last route takes the alert; earlier ones a copy.
            let a = if i == last { alert.take() } else { alert.clone() };
            g.alerts.extend(a.map(|a| (fp.clone(), a)));
            reschedule(wakes, &key, g, now);
            routed(&key);
        }
    }

    /// The keys of the groups an alert with `labels` routes to.
    pub fn group_keys(&self, labels: &Labels) -> Vec<String> {
        self.route.matching(labels).iter().map(|r| r.group_key(labels)).collect()
    }

    /// The notifications due at `now`. Only groups due (or whose
    /// escalation may be) are looked at, so a flush soon after an alert
    /// costs little however many groups are held; alerts are copied only
    /// into a notification that is sent.
    pub fn flush(&mut self, now: DateTime<Utc>, silences: &[Silence]) -> Vec<Notification> {
        self.flush_within(now, silences, &mut HashMap::new())
    }

    /// Whether a flush at `now` would look at a group (one is due, or was
    /// left due for want of room).
    pub fn has_due(&self, now: DateTime<Utc>) -> bool {
        self.wakes.first().is_some_and(|(at, _)| *at <= now)
    }

    /// [`Self::flush`], with room for at most `room[receiver]` more
    /// notifications per receiver (absent: no limit): a group whose
    /// receiver has no room left is left as it is, due, and looked at
    /// again at the next flush, so a full queue delays notifications
    /// instead of losing them.
    ///
    /// Once every receiver the routes name has no room left, the groups
    /// still due are not looked at: after a storm tens of thousands wait
    /// for a full queue, and each flush would look each one up to find so.
    pub fn flush_within(&mut self, now: DateTime<Utc>, silences: &[Silence], room: &mut HashMap<String, usize>) -> Vec<Notification> {
        let mut out = Vec::new();
        if !self.has_due(now) {
            return out;
        }
        let bounded = !room.is_empty() && self.receivers.iter().all(|r| room.contains_key(r));
        let mute = Mute::new(&self.windows, &self.inhibit, &self.firing, silences, now);
        let (groups, wakes, owned, parked) = (&mut self.groups, &mut self.wakes, &self.owned, &mut self.parked);
        // Due again at once (no room): put back after the loop, which
        // would otherwise take them again.
        let mut later = Vec::new();
        while !(bounded && room.values().all(|left| *left == 0)) && wakes.first().is_some_and(|(at, _)| *at <= now) {
            let Some((_, key)) = wakes.pop_first() else { break };
            let Some(g) = groups.get_mut(&key) else { continue };
            // Looked at again when released.
            if self.held.contains(&key) {
                continue;
            }
            // A group sends at most one notification and one escalation.
            let lacks = |r: &str, n: usize| room.get(r).is_some_and(|left| *left < n);
            let escalation = g.escalate.as_ref().map(|(_, r)| r.as_str());
            let need = 1 + usize::from(escalation == Some(g.receiver.as_str()));
            if lacks(&g.receiver, need) || escalation.is_some_and(|r| lacks(r, 1)) {
                g.wake = now;
                later.push((now, key));
                continue;
            }
            let sent_before = out.len();
            let due = g.next_flush <= now;
            let firing: Vec<(&String, &Alert)> = g.alerts.iter().filter(|(_, a)| !a.is_resolved() && !mute.mutes(a)).collect();
            // A group of another collector's assets: only a pure resolve is
            // sent from here; anything firing waits until it is ours.
            if let Some(asset) = unowned(owned, g.alerts.values()).filter(|_| !firing.is_empty()) {
                parked.entry(asset.to_string()).or_default().push(key);
                continue;
            }
            let muted = g.alerts.values().filter(|a| !a.is_resolved()).count() > firing.len();
            // Escalation runs on its own clock.
            if let Some((after, receiver)) = &g.escalate {
                let since = firing.iter().filter(|(_, a)| !a.one_shot).map(|(_, a)| a.starts_at).min();
                if !g.escalated && since.is_some_and(|s| now - s >= *after) {
                    g.escalated = true;
                    out.push(notification(receiver, &key, g.labels(), cloned(&firing), Vec::new(), true, &self.external_url));
                } else if g.escalated && since.is_none() && due {
                    g.escalated = false;
                    let resolved: Vec<Alert> = g.alerts.values().filter(|a| a.is_resolved()).cloned().collect();
                    out.push(notification(receiver, &key, g.labels(), Vec::new(), resolved, true, &self.external_url));
                }
            }
            if due {
                let notified = &g.notified;
                let resolved: Vec<(&String, &Alert)> =
                    g.alerts.iter().filter(|(fp, a)| a.is_resolved() && notified.contains(*fp)).collect();
                let lasting = || firing.iter().filter(|(_, a)| !a.one_shot).map(|(fp, _)| *fp);
                let changed = lasting().count() != notified.len()
                    || !lasting().all(|fp| notified.contains(fp))
                    || !resolved.is_empty()
                    || firing.iter().any(|(_, a)| a.one_shot);
                let repeat = !firing.is_empty() && g.last_sent.is_some_and(|t| now - t >= g.repeat_interval);
                if (changed || repeat) && !(firing.is_empty() && resolved.is_empty()) {
                    out.push(notification(&g.receiver, &key, g.labels(), cloned(&firing), cloned(&resolved), false, &self.external_url));
                    g.last_sent = Some(now);
                }
                if changed {
                    g.notified = lasting().cloned().collect();
                }
                g.alerts.retain(|_, a| !a.is_resolved() && !a.one_shot);
                g.next_flush = now + g.group_interval;
                g.quiet = !muted && !g.alerts.is_empty();
            }
            for n in &out[sent_before..] {
                if let Some(r) = room.get_mut(&n.receiver) {
                    *r = r.saturating_sub(1);
                }
            }
            if g.alerts.is_empty() && !g.escalated {
                groups.remove(&key);
            } else {
                g.wake = g.next_wake(now);
                if g.wake <= now {
                    later.push((g.wake, key));
                } else {
                    wakes.insert((g.wake, key));
                }
            }
        }
        wakes.extend(later);
        out
    }

    /// Groups currently held (for tests and metrics).
    pub fn group_count(&self) -> usize {
        self.groups.len()
    }
}

/// An asset of a group's asset-bound alerts that is not owned here, if
/// any (SLO conditions are owned by the collector that raised them).
fn unowned<'a>(owned: &std::collections::HashSet<String>, mut alerts: impl Iterator<Item = &'a Alert>) -> Option<&'a str> {
    alerts.find_map(|a| {
        let bound = a.labels.get("alertname").is_some_and(|n| n == "violation" || n == "drift");
        let asset = a.labels.get("asset").map(String::as_str);
        (bound && asset.is_none_or(|x| !owned.contains(x))).then_some(asset.unwrap_or_default())
    })
}

/// Copies of the alerts that go into a notification.
fn cloned(alerts: &[(&String, &Alert)]) -> Vec<Alert> {
    alerts.iter().map(|(_, a)| (*a).clone()).collect()
}

/// What mutes an alert at one moment: silences, maintenance windows, and
/// inhibition by firing alerts that are not silenced themselves (those
/// sources are found and indexed once per flush, not once per alert).
struct Mute<'a> {
    silences: &'a [Silence],
    windows: &'a [MaintenanceWindow],
    inhibition: Inhibition<'a>,
    now: DateTime<Utc>,
}

impl<'a> Mute<'a> {
    fn new(
        windows: &'a [MaintenanceWindow],
        inhibit: &'a [InhibitRule],
        firing: &'a HashMap<String, Labels>,
        silences: &'a [Silence],
        now: DateTime<Utc>,
    ) -> Self {
        let sources = firing.values().filter(|l| !silences.iter().any(|s| s.mutes(l, now)));
        Mute { silences, windows, inhibition: Inhibition::new(inhibit, sources), now }
    }

    fn mutes(&self, a: &Alert) -> bool {
        self.silences.iter().any(|s| s.mutes(&a.labels, self.now))
            || self.windows.iter().any(|w| w.mutes(&a.labels, self.now))
            || self.inhibition.inhibits(&a.labels)
    }
}

fn notification(
    receiver: &str,
    key: &str,
    labels: &Labels,
    firing: Vec<Alert>,
    resolved: Vec<Alert>,
    escalation: bool,
    external_url: &str,
) -> Notification {
    Notification {
        receiver: receiver.to_string(),
        group_key: key.to_string(),
        group_labels: labels.clone(),
        firing,
        resolved,
        escalation,
        external_url: external_url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::matcher::Matcher;
    use crate::alert::notification::tests::alert;
    use crate::alert::route::RouteConfig;

    fn dispatcher(yaml: &str) -> Dispatcher {
        let cfg: RouteConfig = serde_yaml::from_str(yaml).unwrap();
        let names = ["slack", "pager", "boss"].iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let mut d = Dispatcher::new(Route::compile(&cfg, &names).unwrap(), Vec::new(), Vec::new(), "http://x".into());
        d.own(["web-1", "web-2", "db-1"].map(String::from));
        d
    }

    const TREE: &str = "receiver: slack\ngroup_by: [asset]\ngroup_wait: 30s\ngroup_interval: 5m\nrepeat_interval: 4h\nroutes:\n  - matchers: [severity=critical]\n    receiver: pager\n    continue: true\n    escalate: {after: 30m, receiver: boss}\n";

    fn s(n: i64) -> Duration {
        Duration::seconds(n)
    }

    /// Alice's maintenance silence of `matcher` from `start` to `end`.
    fn silence(matcher: &str, start: DateTime<Utc>, end: DateTime<Utc>) -> Silence {
        Silence {
            id: "s1".into(),
            matchers: vec![Matcher::parse(matcher).unwrap()],
            starts_at: start,
            ends_at: end,
            created_by: "alice".into(),
            comment: "maintenance".into(),
        }
    }

    fn at(t0: DateTime<Utc>, mut a: Alert) -> Alert {
        a.starts_at = t0;
        a
    }

    fn control(mut a: Alert, c: &str) -> Alert {
        a.labels.insert("control".into(), c.into());
        a
    }

    #[test]
    fn one_notification_per_group_after_group_wait_then_resolve() {
        let mut d = dispatcher(TREE);
        let t0 = Utc::now();
        d.add(at(t0, alert("web-1", "high", false)), t0);
        d.add(at(t0, control(alert("web-1", "high", false), "other")), t0 + s(5));
        assert!(d.flush(t0 + s(10), &[]).is_empty(), "group_wait");
        let n = d.flush(t0 + s(31), &[]);
        assert_eq!(n.len(), 1);
        assert_eq!((n[0].receiver.as_str(), n[0].firing.len()), ("slack", 2));
        assert!(d.flush(t0 + s(400), &[]).is_empty(), "unchanged: nothing until repeat_interval");
        // One resolves: notified at the next group_interval.
        let mut r = at(t0, alert("web-1", "high", false));
        r.ends_at = Some(t0 + s(500));
        d.add(r, t0 + s(500));
        let n = d.flush(t0 + s(631), &[]);
        assert_eq!((n.len(), n[0].firing.len(), n[0].resolved.len()), (1, 1, 1));
        assert!(d.flush(t0 + s(4 * 3600 + 700), &[]).len() == 1, "repeat_interval");
    }

    #[test]
    fn a_held_group_waits_until_it_is_released() {
        let mut d = dispatcher(TREE);
        let t0 = Utc::now();
        d.add(at(t0, alert("web-1", "high", false)), t0);
        d.add(at(t0, alert("web-2", "high", false)), t0);
        let held = d.group_keys(&alert("web-1", "high", false).labels).remove(0);
        d.hold(&[held], t0);
        let assets = |n: &[Notification]| n.iter().flat_map(|n| &n.firing).map(|a| a.labels["asset"].clone()).collect::<Vec<_>>();
        assert_eq!(assets(&d.flush(t0 + s(31), &[])), ["web-2"], "the held group waits");
        assert!(d.flush(t0 + s(35), &[]).is_empty());
        // A new hold without it (a state read again) lets it go.
        d.hold(&[], t0 + s(40));
        assert_eq!(assets(&d.flush(t0 + s(41), &[])), ["web-1"]);
    }

    #[test]
    fn silence_and_resolves_of_unnotified_alerts() {
        let mut d = dispatcher(TREE);
        let t0 = Utc::now();
        let silence = silence("asset=web-1", t0, t0 + s(3600));
        d.add(at(t0, alert("web-1", "high", false)), t0);
        assert!(d.flush(t0 + s(60), std::slice::from_ref(&silence)).is_empty(), "silenced");
        let mut r = alert("web-1", "high", false);
        r.ends_at = Some(t0 + s(120));
        d.add(r, t0 + s(120));
        assert!(d.flush(t0 + s(4000), &[]).is_empty(), "resolved before anyone heard of it: no resolve");
        assert_eq!(d.group_count(), 0);
    }

    #[test]
    fn critical_pages_and_escalates_once_then_resolves_there_too() {
        let mut d = dispatcher(TREE);
        let t0 = Utc::now();
        d.add(at(t0, alert("db-1", "critical", false)), t0);
        let first = d.flush(t0 + s(31), &[]);
        let receivers: Vec<&str> = first.iter().map(|n| n.receiver.as_str()).collect();
        // As in Alertmanager: the root is the fallback when no child
        // matches; `continue` lets later siblings match too.
        assert_eq!(receivers, vec!["pager"]);
        let esc = d.flush(t0 + s(1801), &[]);
        assert_eq!(esc.iter().filter(|n| n.escalation && n.receiver == "boss").count(), 1);
        assert!(d.flush(t0 + s(1900), &[]).iter().all(|n| !n.escalation), "once");
        let mut r = at(t0, alert("db-1", "critical", false));
        r.ends_at = Some(t0 + s(2000));
        d.add(r, t0 + s(2000));
        let end = d.flush(t0 + s(2500), &[]);
        assert!(end.iter().any(|n| n.escalation && n.receiver == "boss" && n.status() == "resolved"), "{end:?}");
        assert!(end.iter().any(|n| !n.escalation && n.receiver == "pager" && n.status() == "resolved"));
    }

    #[test]
    fn an_escalation_held_by_a_silence_goes_out_with_the_first_flush_after_it() {
        let mut d = dispatcher(TREE);
        let t0 = Utc::now();
        let silence = silence("asset=db-1", t0, t0 + s(2000));
        d.add(at(t0, alert("db-1", "critical", false)), t0);
        // Nothing is looked at before the group's wait is over.
        assert!(d.flush(t0 + s(29), &[]).is_empty());
        assert!(d.flush(t0 + s(31), std::slice::from_ref(&silence)).is_empty(), "silenced");
        assert!(d.flush(t0 + s(1801), std::slice::from_ref(&silence)).is_empty(), "escalation due but silenced");
        // Looked at again with the group's flush (every group_interval).
        assert!(d.flush(t0 + s(2050), &[]).is_empty(), "not due yet");
        let n = d.flush(t0 + s(2400), &[]);
        assert_eq!(n.iter().filter(|n| n.escalation && n.receiver == "boss").count(), 1, "{n:?}");
        assert_eq!(n.iter().filter(|n| !n.escalation && n.receiver == "pager").count(), 1, "{n:?}");
        assert!(d.flush(t0 + s(9000), &[]).iter().all(|n| !n.escalation), "once");
    }

    #[test]
    fn a_full_receiver_queue_delays_notifications_and_loses_none() {
        let cfg: RouteConfig = serde_yaml::from_str("receiver: slack\ngroup_by: ['...']\ngroup_wait: 0s").unwrap();
        let mut d = Dispatcher::new(Route::compile(&cfg, &["slack".to_string()]).unwrap(), Vec::new(), Vec::new(), "http://x".into());
        d.own(["web-1", "web-2", "db-1"].map(String::from));
        let t0 = Utc::now();
        for asset in ["web-1", "web-2", "db-1"] {
            d.add(at(t0, alert(asset, "high", false)), t0);
        }
        let mut room = HashMap::from([("slack".to_string(), 2)]);
        let first = d.flush_within(t0, &[], &mut room);
        assert_eq!((first.len(), room["slack"]), (2, 0), "as many as the queue takes");
        assert!(d.flush_within(t0 + s(1), &[], &mut room).is_empty(), "still full");
        assert!(d.has_due(t0 + s(1)), "the third left due, not looked at");
        room.insert("slack".into(), 10);
        let rest = d.flush_within(t0 + s(2), &[], &mut room);
        assert_eq!(rest.len(), 1, "the third, once there is room: {rest:?}");
        let assets: BTreeSet<&str> = first.iter().chain(&rest).map(|n| n.firing[0].labels["asset"].as_str()).collect();
        assert_eq!(assets.len(), 3);
        assert!(d.flush_within(t0 + s(600), &[], &mut room).is_empty(), "each once");
    }

    #[test]
    fn inhibition_mutes_targets_while_the_source_fires() {
        let cfg: RouteConfig = serde_yaml::from_str("receiver: slack\ngroup_by: ['...']\ngroup_wait: 0s").unwrap();
        let rule: InhibitRule =
            serde_yaml::from_str("{source_matchers: [alertname=host_down], target_matchers: [alertname=violation], equal: [asset]}")
                .unwrap();
        let mut d = Dispatcher::new(Route::compile(&cfg, &["slack".to_string()]).unwrap(), vec![rule], Vec::new(), "http://x".into());
        d.own(["web-1", "web-2"].map(String::from));
        let t0 = Utc::now();
        let mut down = alert("web-1", "critical", false);
        down.labels.insert("alertname".into(), "host_down".into());
        d.add(down, t0);
        d.add(alert("web-1", "high", false), t0);
        d.add(alert("web-2", "high", false), t0);
        let n = d.flush(t0, &[]);
        let assets: BTreeSet<(String, String)> =
            n.iter().flat_map(|n| n.firing.iter().map(|a| (a.labels["alertname"].clone(), a.labels["asset"].clone()))).collect();
        assert_eq!(
            assets,
            [("host_down".to_string(), "web-1".to_string()), ("violation".to_string(), "web-2".to_string())].into_iter().collect(),
            "web-1's violation is inhibited by its host_down"
        );
    }

    #[test]
    fn a_resolve_for_a_group_notified_elsewhere_is_sent_once_its_log_is_read() {
        let mut d = dispatcher(TREE);
        let t0 = Utc::now();
        let a = at(t0, alert("web-1", "high", false));
        let mut r = a.clone();
        r.ends_at = Some(t0 + s(60));
        let keys = d.unknown_groups(&r);
        assert_eq!(keys.len(), 1);
        assert!(d.unknown_groups(&a).is_empty(), "only resolves need the log");
        // Another collector notified it firing (the log read for the resolve).
        d.restore_with(
            vec![Sent {
                receiver: "slack".into(),
                group_key: keys[0].clone(),
                at: t0 + s(31),
                firing: [a.fingerprint()].into(),
                alerts: vec![a.clone()],
                escalation: false,
            }],
            t0 + s(60),
            false,
        );
        d.add(r, t0 + s(60));
        let n = d.flush(t0 + s(91), &[]);
        assert_eq!((n.len(), n[0].status()), (1, "resolved"), "after group_wait: {n:?}");
    }

    /// The first wake-up scheduled after `t` (every group held has one).
    fn next_wake(d: &Dispatcher) -> Option<DateTime<Utc>> {
        d.wakes.first().map(|(at, _)| *at)
    }

    #[test]
    fn a_notified_group_sleeps_until_its_repeat_and_a_muted_one_keeps_waking() {
        let mut d = dispatcher(TREE);
        d.own(["web-1", "web-2"].map(String::from));
        let t0 = Utc::now();
        d.add(at(t0, alert("web-1", "high", false)), t0);
        assert_eq!(d.flush(t0 + s(31), &[]).len(), 1);
        assert_eq!(next_wake(&d), Some(t0 + s(31 + 4 * 3600)), "nothing can change before the repeat");
        // A muted group is looked at every group_interval: its silence may end.
        let quiet = silence("asset=web-2", t0, t0 + s(600));
        d.add(at(t0, alert("web-2", "high", false)), t0 + s(40));
        assert!(d.flush(t0 + s(71), std::slice::from_ref(&quiet)).is_empty(), "silenced");
        assert_eq!(next_wake(&d), Some(t0 + s(71 + 300)));
        assert!(d.flush(t0 + s(371), std::slice::from_ref(&quiet)).is_empty(), "still silenced");
        let n = d.flush(t0 + s(671), std::slice::from_ref(&quiet));
        assert_eq!(n.len(), 1, "notified once its silence ended: {n:?}");
        // A change wakes a quiet group at its group_interval again.
        d.add(at(t0, control(alert("web-1", "high", false), "other")), t0 + s(700));
        assert!(next_wake(&d).is_some_and(|w| w <= t0 + s(700)), "due: group_interval since the last send has passed");
        assert_eq!(d.flush(t0 + s(700), &[]).len(), 1);
    }

    /// Grouped by every label, a group keeps no copy of them: its
    /// notification's group labels are its alert's, through the resolve.
    #[test]
    fn a_group_by_every_label_is_labelled_by_its_alert() {
        let mut d = dispatcher("receiver: slack\ngroup_by: ['...']\ngroup_wait: 0s\ngroup_interval: 1m\nroutes: [{matchers: [severity=critical], receiver: pager, continue: true}, {receiver: slack}]\n");
        let t0 = Utc::now();
        let a = alert("web-1", "critical", false);
        d.add(a.clone(), t0);
        assert!(d.groups.values().all(|g| g.labels.is_none()));
        let n = d.flush(t0, &[]);
        assert_eq!(n.len(), 2, "both routes: {n:?}");
        assert!(n.iter().all(|n| n.group_labels == a.labels && n.firing == [a.clone()]), "{n:?}");
        let mut resolved = a.clone();
        resolved.ends_at = Some(t0 + s(5));
        d.add(resolved, t0 + s(5));
        let n = d.flush(t0 + s(60), &[]);
        assert_eq!(n.iter().map(|n| n.status()).collect::<Vec<_>>(), ["resolved", "resolved"]);
        assert!(n.iter().all(|n| n.group_labels == a.labels), "{n:?}");
    }

    #[test]
    fn a_group_on_an_asset_not_owned_waits_for_it_without_being_looked_at() {
        let mut d = dispatcher(TREE);
        d.disown_all();
        let t0 = Utc::now();
        for i in 0..100 {
            d.add(at(t0, alert(&format!("db-{i}"), "high", false)), t0);
        }
        assert!(d.flush(t0 + s(31), &[]).is_empty(), "not ours");
        assert_eq!((d.wakes.len(), d.parked.len()), (0, 100), "parked by asset, off the timers");
        d.own(["db-7".to_string()]);
        assert_eq!(d.wakes.len(), 1, "only the owned asset's group is woken");
        let n = d.flush(t0 + s(32), &[]);
        assert_eq!(n.len(), 1, "{n:?}");
        assert_eq!(n[0].firing[0].labels["asset"], "db-7");
    }

    #[test]
    fn only_the_owner_of_an_asset_pages_repeats_or_escalates() {
        let mut d = dispatcher(TREE);
        d.disown_all();
        let t0 = Utc::now();
        d.add(at(t0, alert("db-1", "critical", false)), t0);
        assert!(d.flush(t0 + s(3 * 3600), &[]).is_empty(), "not ours: no page, no escalation");
        d.own(["db-1".to_string()]);
        let n = d.flush(t0 + s(3 * 3600 + 1), &[]);
        assert_eq!(n.len(), 2, "ours now: the page and the overdue escalation: {n:?}");
        d.disown_all();
        let mut r = at(t0, alert("db-1", "critical", false));
        r.ends_at = Some(t0 + s(4 * 3600));
        d.add(r, t0 + s(4 * 3600));
        let n = d.flush(t0 + s(5 * 3600), &[]);
        assert!(!n.is_empty() && n.iter().all(|n| n.status() == "resolved"), "a pure resolve is sent by anyone: {n:?}");
    }

    #[test]
    fn a_restart_neither_repeats_nor_forgets() {
        let mut d = dispatcher(TREE);
        let t0 = Utc::now();
        let still = at(t0, alert("web-1", "high", false));
        let gone = at(t0, alert("web-2", "high", false));
        // Before the restart both were notified; now only web-1 fires.
        let k1 = d.route.group_key(&still.labels);
        let k2 = d.route.group_key(&gone.labels);
        let sent = |k: &str, a: &Alert| Sent {
            receiver: "slack".into(),
            group_key: k.into(),
            at: t0 + s(31),
            firing: [a.fingerprint()].into(),
            alerts: vec![a.clone()],
            escalation: false,
        };
        d.reconcile(vec![still.clone()], vec![sent(&k1, &still), sent(&k2, &gone)], t0 + s(100));
        let n = d.flush(t0 + s(200), &[]);
        assert_eq!(n.len(), 1, "{n:?}");
        assert_eq!((n[0].status(), n[0].resolved[0].labels["asset"].as_str()), ("resolved", "web-2"));
    }

    /// The notification log lags a page or a resolve by up to a batch and
    /// a write: a collector that takes partitions right after the previous
    /// owner resolved a violation reads the page of that incident as the
    /// last thing sent, and queues its resolve. When the asset fails again
    /// before that resolve goes, the new incident (same fingerprint, another
    /// instance) is paged, not taken for the one already paged.
    #[test]
    fn a_new_incident_is_paged_over_the_last_ones_pending_resolve() {
        use chrono::Timelike;
        let mut d = dispatcher(TREE);
        let t0 = Utc::now();
        let first = at(t0, alert("web-1", "high", false));
        let paged = Sent {
            receiver: "slack".into(),
            group_key: d.group_keys(&first.labels).remove(0),
            at: (t0 + s(31)).with_nanosecond(0).unwrap(),
            firing: [first.fingerprint()].into(),
            alerts: vec![first.clone()],
            escalation: false,
        };
        // Taken over: the violation is closed in the store, the log still
        // has its page (the resolve is not logged yet).
        let t1 = t0 + s(100);
        d.disown_all();
        d.reconcile(Vec::new(), vec![paged], t1);
        d.own(["web-1".to_string()]);
        // Failing again before a flush: a new violation, a new instance.
        let mut again = at(t1 + s(1), alert("web-1", "high", false));
        again.instance = "v-web-1-2".into();
        d.add(again, t1 + s(1));
        let n = d.flush(t1 + s(400), &[]);
        let firing: Vec<&str> = n.iter().flat_map(|n| &n.firing).map(|a| a.instance.as_str()).collect();
        assert_eq!(firing, ["v-web-1-2"], "{n:?}");
    }

    /// The same lag, no new incident: the resolve queued from the log's
    /// stale page is held until the log is read again. Logged by then (the
    /// previous owner sent it): dropped; not logged: sent.
    #[test]
    fn a_resolve_the_previous_owner_may_have_sent_waits_for_the_log() {
        use chrono::Timelike;
        for logged_by_then in [true, false] {
            let mut d = dispatcher(TREE);
            let t0 = Utc::now();
            let a = at(t0, alert("web-1", "high", false));
            let entry = |at: DateTime<Utc>, firing: bool| Sent {
                receiver: "slack".into(),
                group_key: d.group_keys(&a.labels).remove(0),
                at: at.with_nanosecond(0).unwrap(),
                firing: if firing { [a.fingerprint()].into() } else { Default::default() },
                alerts: vec![a.clone()],
                escalation: false,
            };
            let (paged, resolved) = (entry(t0 + s(31), true), entry(t0 + s(90), false));
            let t1 = t0 + s(100);
            d.disown_all();
            let held = d.reconcile(Vec::new(), vec![paged.clone()], t1);
            d.hold(&held, t1);
            assert_eq!(held, std::slice::from_ref(&paged.group_key), "held for a second look");
            assert!(d.flush(t1 + s(1), &[]).is_empty(), "nothing while held");
            d.release(if logged_by_then { vec![resolved] } else { vec![paged] }, t1 + s(2));
            let n = d.flush(t1 + s(3), &[]);
            let resolves: usize = n.iter().map(|n| n.resolved.len()).sum();
            assert_eq!(resolves, usize::from(!logged_by_then), "logged by then: {logged_by_then}; {n:?}");
        }
    }

    /// A collector that takes another's partitions (or starts) reads the
    /// store: a page lost with the collector that died is sent, a violation
    /// closed there is resolved if it was notified and the resolve was not,
    /// dropped if the resolve was, and nothing this collector sent itself
    /// is sent again.
    #[test]
    fn a_takeover_reads_what_the_previous_owner_left() {
        use chrono::Timelike;
        let mut d = dispatcher(TREE);
        d.disown_all();
        let t0 = Utc::now();
        let route = d.route.clone();
        let logged = |a: &Alert, at: DateTime<Utc>, firing: bool| Sent {
            receiver: "slack".into(),
            group_key: route.group_key(&a.labels),
            // The log keeps seconds.
            at: at.with_nanosecond(0).unwrap(),
            firing: if firing { [a.fingerprint()].into() } else { Default::default() },
            alerts: vec![a.clone()],
            escalation: false,
        };
        // Held here since the start, parked: two violations the other
        // collector paged (web-1, web-3); ours, paged by us (db-1).
        let closed_unnotified = at(t0, alert("web-1", "high", false));
        let closed_notified = at(t0, alert("web-3", "high", false));
        let mine = at(t0, alert("db-1", "high", false));
        let start_log = vec![logged(&closed_unnotified, t0 + s(31), true), logged(&closed_notified, t0 + s(31), true)];
        d.reconcile(vec![closed_unnotified.clone(), closed_notified.clone(), mine.clone()], start_log.clone(), t0);
        d.own(["db-1".to_string()]);
        let n = d.flush(t0 + s(31), &[]);
        assert_eq!(n.len(), 1, "only ours is paged here: {n:?}");
        let mine_sent = logged(&mine, t0 + s(31), true);

        // The other collector resolved both, notified web-3's resolve, paged
        // web-2 and died before logging that page; we take its partitions.
        let lost = at(t0 + s(60), alert("web-2", "high", false));
        let t1 = t0 + s(100);
        d.disown_all();
        let log = vec![start_log[0].clone(), logged(&closed_notified, t0 + s(70), false), mine_sent];
        d.reconcile(vec![mine.clone(), lost.clone()], log, t1);
        d.own(["web-1", "web-2", "web-3", "db-1"].map(String::from));
        let n = d.flush(t1 + s(31), &[]);
        let seen: BTreeSet<(String, &str)> = n.iter().map(|n| (n.group_labels["asset"].clone(), n.status())).collect();
        let want: BTreeSet<(String, &str)> = [("web-1".to_string(), "resolved"), ("web-2".to_string(), "firing")].into();
        assert_eq!(seen, want, "{n:?}");
    }
}
