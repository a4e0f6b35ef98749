//! Assets' labels: whose word decides them. Labels route alerts, scope
//! waivers and silences, and select which controls apply, so a host must
//! not choose them for itself: by default the labels a host asserts (its
//! agent's `asset.labels`) are kept under `host_<key>` (as Prometheus keeps
//! a target's conflicting labels under `exported_<key>`), and the labels
//! that decide anything are the operator's, given here by matchers on the
//! asset's id (which its key authenticates, see `identity`) and kind. An
//! operator who trusts the hosts' own labels says so
//! (`assets.host_labels: trusted`); operator labels still win over them.
//!
//! Pure: the rules are applied to each snapshot as it is decoded
//! (`ingest::decode`), so every reader (the engine, waivers, routes,
//! silences, the store) sees the same labels.

use std::collections::BTreeMap;

use driftwatch_schemas::Asset;
use serde::Deserialize;

use crate::alert::matcher::{all_match, Labels, Matcher};

/// Prefix of a host's own labels when they are not trusted.
pub const HOST_PREFIX: &str = "host_";

/// `assets:` in the collector's configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AssetsConfig {
    /// A host's own labels: `prefixed` (default) keeps them as
    /// `host_<key>`, deciding nothing unless a route, waiver or control
    /// names that key; `trusted` takes them as they are.
    pub host_labels: HostLabels,
    /// Operator labels, by matchers on `asset` (the id) and `kind`
    /// (`host`, `k8s_node`, `k8s_cluster`), Alertmanager's syntax; every
    /// matching rule applies, later ones winning for the same key, and an
    /// operator label wins over a host's.
    pub labels: Vec<LabelRule>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostLabels {
    #[default]
    Prefixed,
    Trusted,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelRule {
    /// All must match (none: every asset), e.g. `asset=~"web-.*"`.
    #[serde(default)]
    pub matchers: Vec<String>,
    pub labels: BTreeMap<String, String>,
}

/// The compiled rules.
#[derive(Debug, Clone, Default)]
pub struct AssetLabels {
    trust_host: bool,
    rules: Vec<(Vec<Matcher>, BTreeMap<String, String>)>,
}

impl AssetsConfig {
    pub fn validate(&self, problems: &mut Vec<String>) {
        if let Err(e) = AssetLabels::compile(self) {
            problems.extend(e);
        }
    }
}

impl AssetLabels {
    /// Compiles the rules; every problem names its rule.
    pub fn compile(cfg: &AssetsConfig) -> Result<Self, Vec<String>> {
        let mut problems = Vec::new();
        let mut rules = Vec::new();
        for (i, r) in cfg.labels.iter().enumerate() {
            let mut matchers = Vec::new();
            for (j, m) in r.matchers.iter().enumerate() {
                match Matcher::parse(m) {
                    Ok(m) if ["asset", "kind"].contains(&m.name.as_str()) => matchers.push(m),
                    Ok(m) => problems.push(format!(
                        "assets.labels[{i}].matchers[{j}]: {:?} names {:?}; only asset and kind can be matched (the rest is the host's word)",
                        r.matchers[j], m.name
                    )),
                    Err(e) => problems.push(format!("assets.labels[{i}].matchers[{j}]: {e}")),
                }
            }
            if r.labels.is_empty() {
                problems.push(format!("assets.labels[{i}].labels: give at least one label"));
            }
            for k in r.labels.keys().filter(|k| !valid_key(k)) {
                problems
                    .push(format!("assets.labels[{i}].labels: {k:?} is not a label name (letters, digits, _; not starting with a digit)"));
            }
            rules.push((matchers, r.labels.clone()));
        }
        if problems.is_empty() {
            Ok(AssetLabels { trust_host: cfg.host_labels == HostLabels::Trusted, rules })
        } else {
            Err(problems)
        }
    }

    /// The same rules, with the host's labels taken as they are (the
    /// single-node mode's agent is the operator's own, in-process).
    pub fn trusting_host(mut self) -> Self {
        self.trust_host = true;
        self
    }

    /// Replaces `asset.labels` with the labels that decide: the host's own
    /// (as they are, or under `host_<key>`), then the operator's over them.
    pub fn apply(&self, asset: &mut Asset) {
        if !self.trust_host && !asset.labels.is_empty() {
            let own = std::mem::take(&mut asset.labels);
            asset.labels = own.into_iter().map(|(k, v)| (format!("{HOST_PREFIX}{k}"), v)).collect();
        }
        if self.rules.is_empty() {
            return;
        }
        let subject: Labels = [("asset".to_string(), asset.id.clone()), ("kind".to_string(), asset.kind.as_str().to_string())].into();
        for (matchers, labels) in &self.rules {
            if all_match(matchers, &subject) {
                asset.labels.extend(labels.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
    }
}

fn valid_key(k: &str) -> bool {
    let mut chars = k.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use driftwatch_schemas::AssetKind;

    use super::*;

    fn asset(id: &str, kind: AssetKind, labels: &[(&str, &str)]) -> Asset {
        Asset { id: id.into(), kind, hostname: "h".into(), labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect() }
    }

    fn rules(yaml: &str) -> AssetLabels {
        AssetLabels::compile(&serde_yaml::from_str(yaml).unwrap()).unwrap()
    }

    fn labels(a: &Asset) -> Vec<(&str, &str)> {
        a.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
    }

    #[test]
    fn a_hosts_own_labels_decide_nothing_by_default_and_the_operators_do() {
        let r = rules("labels:\n  - {matchers: ['asset=~\"web-.*\"'], labels: {team: web, env: prod}}\n  - {matchers: ['kind=\"host\"'], labels: {env: staging}}\n");
        let mut a = asset("web-1", AssetKind::Host, &[("team", "payments"), ("zone", "dmz")]);
        r.apply(&mut a);
        assert_eq!(labels(&a), [("env", "staging"), ("host_team", "payments"), ("host_zone", "dmz"), ("team", "web")]);
        let mut other = asset("db-1", AssetKind::K8sNode, &[("team", "web")]);
        r.apply(&mut other);
        assert_eq!(labels(&other), [("host_team", "web")], "no rule matches: nothing decides but its id");
    }

    #[test]
    fn trusted_host_labels_are_kept_under_the_operators() {
        let r = rules("host_labels: trusted\nlabels:\n  - {labels: {team: sec}}\n");
        let mut a = asset("x", AssetKind::Host, &[("team", "payments"), ("zone", "dmz")]);
        r.apply(&mut a);
        assert_eq!(labels(&a), [("team", "sec"), ("zone", "dmz")]);
        let mut b = asset("x", AssetKind::Host, &[("zone", "dmz")]);
        rules("").trusting_host().apply(&mut b);
        assert_eq!(labels(&b), [("zone", "dmz")]);
    }

    #[test]
    fn rules_match_only_what_the_host_cannot_choose_and_name_their_problems() {
        let bad: AssetsConfig =
            serde_yaml::from_str("labels:\n  - {matchers: ['hostname=\"h\"'], labels: {team: x}}\n  - {matchers: ['asset=~\"(\"'], labels: {}}\n  - {labels: {'1x': y}}\n")
                .unwrap();
        let problems = AssetLabels::compile(&bad).unwrap_err();
        assert!(problems[0].starts_with("assets.labels[0].matchers[0]") && problems[0].contains("only asset and kind"), "{problems:?}");
        assert!(problems[1].starts_with("assets.labels[1].matchers[0]"), "{problems:?}");
        assert!(problems.iter().any(|p| p.starts_with("assets.labels[1].labels: give at least one")), "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("\"1x\" is not a label name")), "{problems:?}");
    }
}
