//! The routing tree, as in Alertmanager: an alert enters at the root and
//! descends into the first child whose matchers all match (into every
//! matching child while they set `continue: true`); the deepest matching
//! routes deliver it. Children inherit receiver, grouping and timings from
//! their parent unless they set their own.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::matcher::{all_match, Labels, Matcher};

/// One node of the routing tree, as configured.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub receiver: Option<String>,
    #[serde(default)]
    pub matchers: Vec<Matcher>,
    /// Labels whose values form a group (one notification per group);
    /// `["..."]` groups by every label (one alert per group).
    pub group_by: Option<Vec<String>>,
    /// How long a new group waits for more alerts before its first
    /// notification, e.g. `30s`.
    pub group_wait: Option<String>,
    /// How long before notifying a group again about new or resolved alerts.
    pub group_interval: Option<String>,
    /// How long before re-sending a group that is still firing unchanged.
    pub repeat_interval: Option<String>,
    #[serde(default, rename = "continue")]
    pub continue_matching: bool,
    /// Notify a further receiver when a group stays firing this long.
    pub escalate: Option<EscalateConfig>,
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
}

/// Escalation of a route's unresolved alerts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalateConfig {
    /// e.g. `30m`.
    pub after: String,
    pub receiver: String,
}

/// Grouping of a route.
#[derive(Debug, Clone, PartialEq)]
pub enum GroupBy {
    /// Every label (`...`): one alert per group.
    All,
    Labels(Vec<String>),
}

/// A compiled route.
#[derive(Debug, Clone)]
pub struct Route {
    /// Position in the tree (`0`, `0.1`, …): part of the group key.
    pub id: String,
    pub receiver: String,
    pub matchers: Vec<Matcher>,
    pub group_by: GroupBy,
    pub group_wait: Duration,
    pub group_interval: Duration,
    pub repeat_interval: Duration,
    pub continue_matching: bool,
    pub escalate: Option<(Duration, String)>,
    pub routes: Vec<Route>,
}

/// A duration as operators write it (`30s`, `5m`, `4h`), or an error naming
/// `field`.
pub fn parse_duration(field: &str, text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("{field}: {text:?}: {e} (e.g. \"30s\", \"5m\", \"4h\")"))
}

/// The labels among `labels` named in `names`, borrowed, in name order
/// (as a group's labels are, and its key's fingerprint reads them).
fn picked<'a>(names: &'a [String], labels: &'a Labels) -> BTreeMap<&'a str, &'a str> {
    names.iter().filter_map(|n| labels.get(n).map(|v| (n.as_str(), v.as_str()))).collect()
}

impl Route {
    /// Compiles `cfg` with the root defaults (receiver required at the root).
    pub fn compile(cfg: &RouteConfig, receivers: &[String]) -> Result<Route, Vec<String>> {
        let root = Route {
            id: "0".into(),
            receiver: String::new(),
            matchers: Vec::new(),
            group_by: GroupBy::Labels(vec!["alertname".into()]),
            group_wait: Duration::from_secs(30),
            group_interval: Duration::from_secs(300),
            repeat_interval: Duration::from_secs(4 * 3600),
            continue_matching: false,
            escalate: None,
            routes: Vec::new(),
        };
        let mut errors = Vec::new();
        if cfg.receiver.is_none() {
            errors.push("alerts.route.receiver: the root route needs a receiver".to_string());
        }
        if !cfg.matchers.is_empty() {
            errors.push("alerts.route.matchers: the root route matches every alert; put matchers on child routes".to_string());
        }
        let r = Self::compile_node(cfg, &root, "0", "alerts.route", receivers, &mut errors);
        if errors.is_empty() {
            Ok(r)
        } else {
            Err(errors)
        }
    }

    fn compile_node(cfg: &RouteConfig, parent: &Route, id: &str, at: &str, receivers: &[String], errors: &mut Vec<String>) -> Route {
        let mut dur = |field: &str, v: &Option<String>, inherited: Duration| match v {
            None => inherited,
            Some(t) => parse_duration(&format!("{at}.{field}"), t).unwrap_or_else(|e| {
                errors.push(e);
                inherited
            }),
        };
        let group_wait = dur("group_wait", &cfg.group_wait, parent.group_wait);
        let group_interval = dur("group_interval", &cfg.group_interval, parent.group_interval);
        let repeat_interval = dur("repeat_interval", &cfg.repeat_interval, parent.repeat_interval);
        let receiver = cfg.receiver.clone().unwrap_or_else(|| parent.receiver.clone());
        if cfg.receiver.is_some() && !receivers.contains(&receiver) {
            errors.push(format!("{at}.receiver: no receiver named {receiver:?} (known: {})", receivers.join(", ")));
        }
        let escalate = cfg.escalate.as_ref().and_then(|e| {
            if !receivers.contains(&e.receiver) {
                errors.push(format!("{at}.escalate.receiver: no receiver named {:?}", e.receiver));
            }
            match parse_duration(&format!("{at}.escalate.after"), &e.after) {
                Ok(d) => Some((d, e.receiver.clone())),
                Err(msg) => {
                    errors.push(msg);
                    None
                }
            }
        });
        let group_by = match &cfg.group_by {
            None => parent.group_by.clone(),
            Some(l) if l.iter().any(|x| x == "...") => GroupBy::All,
            Some(l) => GroupBy::Labels(l.clone()),
        };
        let mut node = Route {
            id: id.to_string(),
            receiver,
            matchers: cfg.matchers.clone(),
            group_by,
            group_wait,
            group_interval,
            repeat_interval,
            continue_matching: cfg.continue_matching,
            escalate,
            routes: Vec::new(),
        };
        node.routes = cfg
            .routes
            .iter()
            .enumerate()
            .map(|(i, c)| Self::compile_node(c, &node, &format!("{id}.{i}"), &format!("{at}.routes[{i}]"), receivers, errors))
            .collect();
        node
    }

    /// The routes that deliver an alert with `labels`.
    pub fn matching(&self, labels: &Labels) -> Vec<&Route> {
        let mut out = Vec::new();
        self.descend(labels, &mut out);
        out
    }

    fn descend<'a>(&'a self, labels: &Labels, out: &mut Vec<&'a Route>) -> bool {
        if !all_match(&self.matchers, labels) {
            return false;
        }
        let mut matched_child = false;
        for child in &self.routes {
            if child.descend(labels, out) {
                matched_child = true;
                if !child.continue_matching {
                    break;
                }
            }
        }
        if !matched_child {
            out.push(self);
        }
        true
    }

    /// The group key of `labels` on this route (nothing copied: it is
    /// computed for every alert that comes in).
    pub fn group_key(&self, labels: &Labels) -> String {
        let fingerprint = match &self.group_by {
            GroupBy::All => super::model::fingerprint(labels),
            GroupBy::Labels(names) => super::model::fingerprint_of(picked(names, labels)),
        };
        format!("{}:{fingerprint}", self.id)
    }

    /// The labels `labels` are grouped by on this route.
    pub fn group_labels(&self, labels: &Labels) -> Labels {
        match &self.group_by {
            GroupBy::All => labels.clone(),
            GroupBy::Labels(names) => picked(names, labels).into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    /// Whether this route groups by every label (a group holds one alert).
    pub fn groups_by_all(&self) -> bool {
        matches!(self.group_by, GroupBy::All)
    }

    /// Every route of the tree, depth first.
    pub fn walk(&self) -> Vec<&Route> {
        let mut v = vec![self];
        for r in &self.routes {
            v.extend(r.walk());
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> Route {
        let cfg: RouteConfig = serde_yaml::from_str(
            r#"
receiver: slack
group_by: [asset]
group_wait: 10s
routes:
  - matchers: ['severity=~"critical|high"']
    receiver: pager
    continue: true
    escalate: {after: 30m, receiver: manager}
  - matchers: [team=db]
    receiver: db-slack
    group_wait: 1s
    routes:
      - matchers: [env=prod]
        receiver: db-pager
"#,
        )
        .unwrap();
        let names: Vec<String> = ["slack", "pager", "manager", "db-slack", "db-pager"].iter().map(|s| s.to_string()).collect();
        Route::compile(&cfg, &names).unwrap()
    }

    fn l(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn first_match_continue_and_fallback_to_the_parent() {
        let t = tree();
        let names = |labels: &Labels| t.matching(labels).iter().map(|r| r.receiver.clone()).collect::<Vec<_>>();
        assert_eq!(names(&l(&[("severity", "low")])), vec!["slack"]);
        assert_eq!(names(&l(&[("severity", "high"), ("team", "db")])), vec!["pager", "db-slack"], "continue");
        assert_eq!(names(&l(&[("severity", "high"), ("team", "db"), ("env", "prod")])), vec!["pager", "db-pager"]);
        let db = &t.routes[1];
        assert_eq!((db.group_wait, db.routes[0].group_wait), (Duration::from_secs(1), Duration::from_secs(1)), "inherited");
        assert_eq!(t.routes[0].escalate, Some((Duration::from_secs(1800), "manager".into())));
        assert_eq!(t.routes[0].group_by, GroupBy::Labels(vec!["asset".into()]));
    }

    #[test]
    fn groups_by_the_chosen_labels() {
        let t = tree();
        let k1 = t.group_key(&l(&[("asset", "a"), ("control", "x")]));
        let g = t.group_labels(&l(&[("asset", "a"), ("control", "x")]));
        let k2 = t.group_key(&l(&[("asset", "a"), ("control", "y")]));
        let k3 = t.group_key(&l(&[("asset", "b"), ("control", "x")]));
        assert_eq!(k1, k2);
        assert_ne!(k1, k3);
        assert_eq!(g, l(&[("asset", "a")]));
    }

    /// The key is the fingerprint of the group's labels in name order, as
    /// it was when the key was computed from a copy of them: keys in the
    /// notification log of an earlier version still match.
    #[test]
    fn the_group_key_is_the_fingerprint_of_the_group_labels() {
        let cfg: RouteConfig =
            serde_yaml::from_str("receiver: x\ngroup_by: [team, asset]\nroutes: [{receiver: x, group_by: ['...']}]").unwrap();
        let t = Route::compile(&cfg, &["x".to_string()]).unwrap();
        let labels = l(&[("team", "db"), ("asset", "a"), ("control", "x")]);
        for route in [&t, &t.routes[0]] {
            let want = format!("{}:{}", route.id, super::super::model::fingerprint(&route.group_labels(&labels)));
            assert_eq!(route.group_key(&labels), want);
        }
        assert_eq!(t.group_labels(&labels), l(&[("asset", "a"), ("team", "db")]));
        assert!(t.routes[0].groups_by_all() && !t.groups_by_all());
    }

    #[test]
    fn errors_name_the_field() {
        let cfg: RouteConfig =
            serde_yaml::from_str("receiver: nope\ngroup_wait: soon\nroutes: [{receiver: x, escalate: {after: 1m, receiver: y}}]").unwrap();
        let e = Route::compile(&cfg, &["x".to_string()]).unwrap_err();
        assert!(e.iter().any(|m| m.starts_with("alerts.route.receiver: no receiver named \"nope\"")), "{e:?}");
        assert!(e.iter().any(|m| m.starts_with("alerts.route.group_wait: \"soon\"")), "{e:?}");
        assert!(e.iter().any(|m| m.starts_with("alerts.route.routes[0].escalate.receiver")), "{e:?}");
    }
}
