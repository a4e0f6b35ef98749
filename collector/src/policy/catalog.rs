//! Framework catalogs: every requirement of a framework, with its title
//! and where it sits (its group: a SOC 2 criteria series under its trust
//! services category, a CSF category under its function; and for a
//! sub-requirement its `parent`), so that a mapping to an id the
//! framework does not have is refused, and a score can say how much of
//! the framework it covers.
//!
//! Catalogs ship as data in `policies/frameworks/<framework>.yaml`,
//! embedded in the binary; a file of the same name in the policy folder's
//! own `frameworks/` replaces the shipped one (an organisation's own
//! framework, or a newer revision). A framework without a catalog is
//! checked by the shape of its ids only ([`super::frameworks`]).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

use serde::Deserialize;

use super::{frameworks, PolicyError};

/// The folder, inside a policy folder, that holds catalogs.
pub const DIR: &str = "frameworks";

/// One framework's catalog.
#[derive(Debug, Clone)]
pub struct Catalog {
    pub framework: String,
    /// Set for a baseline (FedRAMP's of NIST SP 800-53): the framework its
    /// requirements are selected from. A control mapped to a requirement
    /// of that framework the baseline selects counts for the baseline too
    /// ([`Catalogs::derive`]).
    pub baseline_of: Option<String>,
    /// Where it was read from (a path under `policies/`, or a file).
    pub source: PathBuf,
    pub groups: Vec<Group>,
    pub requirements: Vec<Requirement>,
    by_id: HashMap<String, usize>,
    groups_by_id: HashMap<String, usize>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    pub id: String,
    pub title: String,
    /// The enclosing group; none for a root (a CSF function, a SOC 2
    /// category).
    #[serde(default)]
    pub parent: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requirement {
    pub id: String,
    pub title: String,
    pub group: String,
    /// The requirement this one is part of (a HIPAA implementation
    /// specification's standard, a NERC CIP part's requirement).
    #[serde(default)]
    pub parent: Option<String>,
    /// HIPAA: `standard`, `required` or `addressable`.
    #[serde(default)]
    pub kind: Option<String>,
    /// CMMC: the NIST SP 800-171 number of the practice.
    #[serde(default)]
    pub nist_800_171: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    framework: String,
    #[serde(default)]
    baseline_of: Option<String>,
    groups: Vec<Group>,
    requirements: Vec<Requirement>,
}

impl Catalog {
    /// Parses and checks one catalog: a known framework, ids of its shape,
    /// each id once, groups and parents that exist.
    pub fn parse(source: &Path, text: &str) -> Result<Catalog, Vec<PolicyError>> {
        let error = |line: Option<usize>, message: String| PolicyError { file: source.to_path_buf(), line, message };
        let file: File = serde_yaml::from_str(text).map_err(|e| vec![error(e.location().map(|l| l.line()), e.to_string())])?;
        let Some((fw, shape)) = frameworks::framework(&file.framework) else {
            return Err(vec![error(None, format!("unknown framework {:?}", file.framework))]);
        };
        let mut errors = Vec::new();
        let mut groups_by_id = HashMap::new();
        for (i, g) in file.groups.iter().enumerate() {
            if groups_by_id.insert(g.id.clone(), i).is_some() {
                errors.push(error(line_of_id(text, &g.id, 1), format!("group {:?} is listed twice", g.id)));
            }
        }
        for g in &file.groups {
            if let Some(p) = g.parent.as_ref().filter(|p| !groups_by_id.contains_key(*p)) {
                errors.push(error(line_of_id(text, &g.id, 0), format!("group {:?}: its parent {p:?} is not a group", g.id)));
            }
        }
        let mut by_id = HashMap::new();
        for (i, r) in file.requirements.iter().enumerate() {
            let line = line_of_id(text, &r.id, 0);
            if by_id.insert(r.id.clone(), i).is_some() {
                errors.push(error(line_of_id(text, &r.id, 1), format!("requirement {:?} is listed twice", r.id)));
            }
            if !shape.is_match(&r.id) {
                errors.push(error(line, format!("{:?} is not a {} requirement id (e.g. {:?})", r.id, fw.name, fw.example)));
            }
            if !groups_by_id.contains_key(&r.group) {
                errors.push(error(line, format!("requirement {:?}: group {:?} is not listed under groups", r.id, r.group)));
            }
        }
        for r in &file.requirements {
            if let Some(p) = r.parent.as_ref().filter(|p| !by_id.contains_key(*p)) {
                errors.push(error(line_of_id(text, &r.id, 0), format!("requirement {:?}: its parent {p:?} is not a requirement", r.id)));
            }
        }
        if let Some(base) = &file.baseline_of {
            if frameworks::framework(base).is_none() || *base == file.framework {
                errors.push(error(line_of_key(text, "baseline_of"), format!("baseline_of: {base:?} is not another known framework")));
            }
        }
        if file.requirements.is_empty() {
            errors.push(error(None, "lists no requirements".into()));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Catalog {
            framework: file.framework,
            baseline_of: file.baseline_of,
            source: source.to_path_buf(),
            groups: file.groups,
            requirements: file.requirements,
            by_id,
            groups_by_id,
        })
    }

    pub fn requirement(&self, id: &str) -> Option<&Requirement> {
        self.by_id.get(id).map(|&i| &self.requirements[i])
    }

    pub fn contains(&self, id: &str) -> bool {
        self.by_id.contains_key(id)
    }

    /// The root group a requirement sits under (a CSF function, a SOC 2
    /// category, a CMMC family).
    pub fn root_group(&self, requirement: &str) -> Option<&Group> {
        let mut g = self.groups.get(*self.groups_by_id.get(&self.requirement(requirement)?.group)?)?;
        // Bounded: a cycle of parents cannot hold the loop.
        for _ in 0..self.groups.len() {
            match g.parent.as_ref().and_then(|p| self.groups_by_id.get(p)) {
                Some(&i) => g = &self.groups[i],
                None => break,
            }
        }
        Some(g)
    }
}

/// The catalogs in force, by framework key.
#[derive(Debug, Clone, Default)]
pub struct Catalogs(BTreeMap<String, Arc<Catalog>>);

impl Catalogs {
    /// The catalogs shipped in the binary (`policies/frameworks/`).
    pub fn shipped() -> Catalogs {
        static SHIPPED: LazyLock<Catalogs> = LazyLock::new(|| {
            let mut out = Catalogs::default();
            for (path, text) in super::bundled::FILES.iter().filter(|(p, _)| p.starts_with("frameworks/")) {
                match Catalog::parse(Path::new(path), text) {
                    Ok(c) => {
                        out.0.insert(c.framework.clone(), Arc::new(c));
                    }
                    // The shipped catalogs are checked by a test; a broken
                    // one is left out (its framework keeps its id shapes).
                    Err(e) => tracing::error!(file = path, errors = ?e, "a shipped framework catalog is invalid"),
                }
            }
            out
        });
        SHIPPED.clone()
    }

    /// The shipped catalogs, each replaced by a file of the policy folder's
    /// `frameworks/` that names the same framework (new ones added).
    pub fn load(policy_dir: &Path) -> Result<Catalogs, Vec<PolicyError>> {
        let mut out = Catalogs::shipped();
        let dir = policy_dir.join(DIR);
        let Ok(entries) = std::fs::read_dir(&dir) else { return Ok(out) };
        let mut files: Vec<PathBuf> =
            entries.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml")).collect();
        files.sort();
        let mut errors = Vec::new();
        for file in files {
            let parsed = std::fs::read_to_string(&file)
                .map_err(|e| vec![PolicyError { file: file.clone(), line: None, message: format!("cannot read: {e}") }])
                .and_then(|text| Catalog::parse(&file, &text));
            match parsed {
                Ok(c) => {
                    out.0.insert(c.framework.clone(), Arc::new(c));
                }
                Err(mut e) => errors.append(&mut e),
            }
        }
        errors.extend(out.baseline_errors());
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(errors)
        }
    }

    /// A baseline must select from a framework that has a catalog, and
    /// only requirements that catalog lists.
    fn baseline_errors(&self) -> Vec<PolicyError> {
        let mut errors = Vec::new();
        for c in self.iter() {
            let Some(base) = &c.baseline_of else { continue };
            let error = |line, message| PolicyError { file: c.source.clone(), line, message };
            let Some(of) = self.get(base) else {
                errors.push(error(None, format!("baseline of {base}, which has no catalog")));
                continue;
            };
            for r in c.requirements.iter().filter(|r| !of.contains(&r.id)) {
                errors.push(error(None, format!("requirement {:?} is not in the catalog of {base} ({})", r.id, of.source.display())));
            }
        }
        errors
    }

    /// Adds to a control's mapping `by_framework` the baselines' share of
    /// it: for each baseline, the requirements of the framework it is
    /// drawn from that the control maps to and the baseline selects
    /// (AC-2(3) of NIST SP 800-53 counts for FedRAMP Moderate, which
    /// selects it). A mapping the control makes itself is kept.
    pub fn derive(&self, by_framework: &mut BTreeMap<String, Vec<String>>) {
        for c in self.iter() {
            let Some(base) = &c.baseline_of else { continue };
            let selected: Vec<String> = by_framework.get(base).into_iter().flatten().filter(|id| c.contains(id)).cloned().collect();
            if selected.is_empty() {
                continue;
            }
            let ids = by_framework.entry(c.framework.clone()).or_default();
            for id in selected {
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
        }
    }

    pub fn get(&self, framework: &str) -> Option<&Catalog> {
        self.0.get(framework).map(|c| &**c)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Catalog> {
        self.0.values().map(|c| &**c)
    }
}

/// The 1-based line of the top-level `key:`.
fn line_of_key(text: &str, key: &str) -> Option<usize> {
    text.lines().position(|l| l.strip_prefix(key).is_some_and(|r| r.starts_with(':'))).map(|i| i + 1)
}

/// The 1-based line of the entry `{id: <id>, …}` (quoted or not), skipping
/// `skip` earlier entries of that id (a duplicate is named where it repeats).
fn line_of_id(text: &str, id: &str, skip: usize) -> Option<usize> {
    let (plain, quoted) = (format!("{{id: {id},"), format!("{{id: {id:?},"));
    text.lines().enumerate().filter(|(_, l)| l.contains(&plain) || l.contains(&quoted)).nth(skip).map(|(i, _)| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_catalog_is_valid_and_whole() {
        let mut sizes = BTreeMap::new();
        for (path, text) in super::super::bundled::FILES.iter().filter(|(p, _)| p.starts_with("frameworks/")) {
            let c = Catalog::parse(Path::new(path), text).unwrap_or_else(|e| panic!("{path}: {e:?}"));
            sizes.insert(c.framework.clone(), c.requirements.len());
        }
        // The whole catalogs: SOC 2's 61 criteria, ISO 27001:2022's 93
        // Annex A controls, CSF 2.0's 106 subcategories, CMMC level 2's 110
        // practices; HIPAA's standards and implementation specifications;
        // NERC CIP's requirements; GDPR's security articles; PCI DSS 4.0's
        // requirements down to x.y.z and below; NIST SP 800-53 rev. 5's
        // controls and enhancements in force, and FedRAMP's three
        // baselines of them; the CIS recommendations mapped.
        for (fw, n) in [
            ("soc2", 61),
            ("iso27001", 93),
            ("nist-csf", 106),
            ("cmmc", 110),
            ("hipaa", 65),
            ("nerc-cip", 72),
            ("gdpr", 26),
            ("pci-dss", 260),
            ("nist-800-53", 1007),
            ("fedramp-low", 156),
            ("fedramp-moderate", 323),
            ("fedramp-high", 410),
            ("cis", 161),
        ] {
            assert_eq!(sizes.get(fw), Some(&n), "{fw}: {sizes:?}");
        }
        let shipped = Catalogs::shipped();
        assert_eq!(shipped.get("nist-csf").unwrap().root_group("PR.AA-05").map(|g| g.title.as_str()), Some("Protect"));
        assert_eq!(shipped.get("soc2").unwrap().root_group("A1.2").map(|g| g.id.as_str()), Some("availability"));
        assert_eq!(shipped.get("hipaa").unwrap().requirement("164.312(a)(2)(iv)").and_then(|r| r.kind.as_deref()), Some("addressable"));
        let pci = shipped.get("pci-dss").unwrap();
        assert_eq!(pci.requirement("9.5.1.2.1").and_then(|r| r.parent.as_deref()), Some("9.5.1.2"));
        assert_eq!(pci.root_group("10.2.1.4").map(|g| g.id.as_str()), Some("10"));
        let nist = shipped.get("nist-800-53").unwrap();
        assert_eq!(nist.requirement("AC-2(3)").and_then(|r| r.parent.as_deref()), Some("AC-2"));
        assert_eq!(nist.requirement("SC-7").map(|r| r.title.as_str()), Some("Boundary Protection"));
        assert!(!nist.contains("AC-13"), "withdrawn controls are left out");
        assert_eq!(shipped.baseline_errors(), Vec::<PolicyError>::new());
        let high = shipped.get("fedramp-high").unwrap();
        assert_eq!(high.baseline_of.as_deref(), Some("nist-800-53"));
        for r in &shipped.get("fedramp-low").unwrap().requirements {
            assert!(shipped.get("fedramp-moderate").unwrap().contains(&r.id), "Low's {} is in Moderate", r.id);
        }
        assert_eq!(shipped.get("cis").unwrap().root_group("Debian 12 5.1.20").map(|g| g.id.as_str()), Some("Debian 12"));
    }

    #[test]
    fn a_baseline_counts_the_mappings_to_what_it_selects() {
        let shipped = Catalogs::shipped();
        let mut mapping: BTreeMap<String, Vec<String>> =
            [("nist-800-53".to_string(), vec!["AC-2(3)".to_string(), "AC-2(11)".to_string(), "PM-9".to_string()])].into();
        mapping.insert("fedramp-high".into(), vec!["AC-2(11)".into()]);
        shipped.derive(&mut mapping);
        // Low selects none of them, Moderate AC-2(3), High both (the
        // mapping made by hand kept once); PM-9 is in no FedRAMP baseline.
        assert_eq!(mapping.get("fedramp-low"), None);
        assert_eq!(mapping["fedramp-moderate"], ["AC-2(3)"]);
        assert_eq!(mapping["fedramp-high"], ["AC-2(11)", "AC-2(3)"]);
    }

    #[test]
    fn a_baseline_must_select_from_a_catalog() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(DIR)).unwrap();
        std::fs::write(
            dir.path().join(DIR).join("fedramp-low.yaml"),
            "baseline_of: nist-800-53\nframework: fedramp-low\ngroups:\n  - {id: AC, title: A}\nrequirements:\n  - {id: AC-2, group: AC, title: a}\n  - {id: AC-99, group: AC, title: b}\n",
        )
        .unwrap();
        let e = Catalogs::load(dir.path()).unwrap_err();
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].to_string().contains("\"AC-99\" is not in the catalog of nist-800-53"), "{e:?}");
        let e = Catalog::parse(
            Path::new("b.yaml"),
            "baseline_of: nope\nframework: fedramp-low\ngroups: [{id: AC, title: A}]\nrequirements: [{id: AC-2, group: AC, title: a}]\n",
        )
        .unwrap_err();
        assert!(e[0].to_string().starts_with("b.yaml:1: baseline_of: \"nope\""), "{e:?}");
    }

    #[test]
    fn a_broken_catalog_names_each_problem_and_its_line() {
        let text = "framework: soc2\ngroups:\n  - {id: CC6, title: t, parent: nowhere}\nrequirements:\n  - {id: CC6.1, group: CC6, title: a}\n  - {id: CC6.1, group: CC6, title: b}\n  - {id: CC6, group: CC9, title: c}\n  - {id: CC6.2, group: CC6, parent: CC6.9, title: d}\n";
        let e = Catalog::parse(Path::new("frameworks/soc2.yaml"), text).unwrap_err();
        let shown: Vec<String> = e.iter().map(ToString::to_string).collect();
        for expected in [
            "frameworks/soc2.yaml:3: group \"CC6\": its parent \"nowhere\" is not a group",
            "frameworks/soc2.yaml:6: requirement \"CC6.1\" is listed twice",
            "is not a SOC 2 (2017 TSC) requirement id",
            "group \"CC9\" is not listed under groups",
            "requirement \"CC6.2\": its parent \"CC6.9\" is not a requirement",
        ] {
            assert!(shown.iter().any(|s| s.contains(expected)), "{expected} in {shown:#?}");
        }
        assert!(Catalog::parse(Path::new("x.yaml"), "framework: nope\ngroups: []\nrequirements: []\n").is_err());
        assert!(Catalog::parse(Path::new("x.yaml"), "framework: soc2\ngroups: []\nrequirements: []\nextra: 1\n").is_err());
    }

    #[test]
    fn a_policy_folder_replaces_a_shipped_catalog() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(DIR)).unwrap();
        std::fs::write(
            dir.path().join(DIR).join("soc2.yaml"),
            "framework: soc2\ngroups:\n  - {id: CC6, title: Access}\nrequirements:\n  - {id: CC6.1, group: CC6, title: Only this}\n",
        )
        .unwrap();
        let c = Catalogs::load(dir.path()).unwrap();
        assert_eq!(c.get("soc2").unwrap().requirements.len(), 1);
        assert_eq!(c.get("iso27001").unwrap().requirements.len(), 93, "the others stay shipped");
        std::fs::write(dir.path().join(DIR).join("bad.yaml"), "framework: soc2\n").unwrap();
        let e = Catalogs::load(dir.path()).unwrap_err();
        assert!(e[0].to_string().starts_with(&dir.path().join(DIR).join("bad.yaml").display().to_string()), "{e:?}");
    }
}
