//! Verification: recompute every link of every chain in a period and
//! compare the rows stored now with what the links say was stored. Pure:
//! the store supplies links, roots and rows ([`crate::store::evidence`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use super::{merkle_root, LinkRow, RowDigest, GENESIS, TABLES};

pub use crate::store::evidence::{StoredRoot, StoredRow};

/// One problem found.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Finding {
    /// A link's stored hash is not the hash of its content.
    LinkAltered { chain_id: String, seq: u64, batch_id: String },
    /// A link does not follow the one before it.
    ChainBroken { chain_id: String, seq: u64, batch_id: String },
    /// Links are missing: batches deleted with their links.
    LinksMissing { chain_id: String, after_seq: u64, before_seq: u64 },
    /// Rows a link recorded are gone (all of them: the batch was deleted).
    RowsDeleted { batch_id: String, table: String, rows: usize, of: usize },
    /// Rows of a chained batch differ from what its link recorded.
    RowsAltered { batch_id: String, table: String, rows: usize, keys: Vec<String> },
    /// Rows no link recorded: a batch (or rows) inserted.
    RowsInserted { batch_id: String, table: String, rows: usize, keys: Vec<String> },
    /// An hourly root does not match its links.
    RootMismatch { chain_id: String, hour: chrono::DateTime<chrono::Utc> },
    /// An attestation's evidence file no longer has the SHA-256 attested.
    FileAltered { attestation_id: String, name: String, sha256: String },
    /// An attestation's evidence file is gone.
    FileMissing { attestation_id: String, name: String, sha256: String },
}

/// What verification checked and found.
#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    pub chains: usize,
    pub links: usize,
    pub rows: usize,
    pub roots: usize,
    /// Attestations' evidence files checked against their SHA-256.
    pub files: usize,
    pub findings: Vec<Finding>,
}

impl Verification {
    pub fn intact(&self) -> bool {
        self.findings.is_empty()
    }
}

fn table(code: u8) -> String {
    TABLES.get(usize::from(code).wrapping_sub(1)).copied().unwrap_or("unknown").to_string()
}

/// Verifies `links` (every chain, in a period), the `rows` stored for them
/// and for the period, and the hourly `roots`. `outside` are links of
/// batches chained outside the period whose rows fall in it: they vouch
/// for those rows, and are not themselves checked.
pub fn verify(links: &[LinkRow], outside: &[LinkRow], rows: &[StoredRow], roots: &[StoredRoot]) -> Verification {
    let (chains, mut findings) = check_links(links);
    findings.extend(check_rows(links, outside, rows));
    findings.extend(check_roots(&chains, roots));
    Verification { chains: chains.len(), links: links.len(), rows: rows.len(), roots: roots.len(), files: 0, findings }
}

/// What the links and roots alone show (no rows read): a link altered, a
/// chain broken, links missing, a root that does not match. Cheap enough
/// to run every few minutes (the evidence-roots task does, for
/// `driftwatch_evidence_findings`).
pub fn verify_links(links: &[LinkRow], roots: &[StoredRoot]) -> Vec<Finding> {
    let (chains, mut findings) = check_links(links);
    findings.extend(check_roots(&chains, roots));
    findings
}

/// Each chain's links in order, and what their hashes show.
fn check_links(links: &[LinkRow]) -> (BTreeMap<&str, Vec<&LinkRow>>, Vec<Finding>) {
    let mut findings = Vec::new();
    let mut chains: BTreeMap<&str, Vec<&LinkRow>> = BTreeMap::new();
    for l in links {
        chains.entry(&l.chain_id).or_default().push(l);
    }
    for (chain, ls) in &mut chains {
        ls.sort_by_key(|l| l.seq);
        let mut prev: Option<&LinkRow> = None;
        for l in ls.iter() {
            if l.expected_hash() != l.hash {
                findings.push(Finding::LinkAltered { chain_id: chain.to_string(), seq: l.seq, batch_id: l.batch_id.clone() });
            }
            match prev {
                Some(p) if l.seq > p.seq + 1 => {
                    findings.push(Finding::LinksMissing { chain_id: chain.to_string(), after_seq: p.seq, before_seq: l.seq })
                }
                Some(p) if l.prev_hash != p.hash => {
                    findings.push(Finding::ChainBroken { chain_id: chain.to_string(), seq: l.seq, batch_id: l.batch_id.clone() })
                }
                None if l.seq == 1 && l.prev_hash != GENESIS => {
                    findings.push(Finding::ChainBroken { chain_id: chain.to_string(), seq: l.seq, batch_id: l.batch_id.clone() })
                }
                _ => {}
            }
            prev = Some(l);
        }
    }
    (chains, findings)
}

/// Rows against the links that recorded them.
fn check_rows(links: &[LinkRow], outside: &[LinkRow], rows: &[StoredRow]) -> Vec<Finding> {
    let mut findings = Vec::new();
    // Rows: every recorded digest must still be stored (under any batch id:
    // a redelivered copy may have replaced the original), and every stored
    // row must be recorded by some link.
    let stored: BTreeSet<(u8, RowDigest)> = rows.iter().map(|r| (r.table, r.digest)).collect();
    let mut chained: BTreeSet<(u8, RowDigest)> = BTreeSet::new();
    let batches: HashMap<&str, &LinkRow> = links.iter().chain(outside).map(|l| (l.batch_id.as_str(), l)).collect();
    for l in outside {
        chained.extend(l.row_tables.iter().copied().zip(l.row_digests.iter().copied()));
    }
    for l in links {
        let mut per_table: BTreeMap<u8, (usize, usize)> = BTreeMap::new();
        for (t, d) in l.row_tables.iter().zip(&l.row_digests) {
            chained.insert((*t, *d));
            let e = per_table.entry(*t).or_default();
            e.1 += 1;
            if !stored.contains(&(*t, *d)) {
                e.0 += 1;
            }
        }
        for (t, (missing, of)) in per_table {
            if missing == 0 {
                continue;
            }
            // Altered rows show up as unexpected ones below; rows simply gone are deletions.
            let altered = rows.iter().filter(|r| r.batch_id == l.batch_id && r.table == t && !chained_in(l, t, &r.digest)).count();
            if missing > altered {
                findings.push(Finding::RowsDeleted { batch_id: l.batch_id.clone(), table: table(t), rows: missing - altered, of });
            }
        }
    }
    let mut unexpected: BTreeMap<(String, u8), Vec<&StoredRow>> = BTreeMap::new();
    for r in rows {
        if !chained.contains(&(r.table, r.digest)) {
            unexpected.entry((r.batch_id.clone(), r.table)).or_default().push(r);
        }
    }
    for ((batch_id, t), rs) in unexpected {
        let keys = rs.iter().take(5).map(|r| r.key.clone()).collect();
        findings.push(if batches.contains_key(batch_id.as_str()) {
            Finding::RowsAltered { batch_id, table: table(t), rows: rs.len(), keys }
        } else {
            Finding::RowsInserted { batch_id, table: table(t), rows: rs.len(), keys }
        });
    }
    findings
}

/// Each hourly root against the links of its hour (where all are read).
fn check_roots(chains: &BTreeMap<&str, Vec<&LinkRow>>, roots: &[StoredRoot]) -> Vec<Finding> {
    let mut findings = Vec::new();
    for root in roots {
        let Some(ls) = chains.get(root.chain_id.as_str()) else { continue };
        let hashes: Vec<String> = ls.iter().filter(|l| l.seq >= root.first_seq && l.seq <= root.last_seq).map(|l| l.hash.clone()).collect();
        if hashes.len() as u64 == root.last_seq - root.first_seq + 1 && merkle_root(&hashes) != root.root {
            findings.push(Finding::RootMismatch { chain_id: root.chain_id.clone(), hour: root.hour });
        }
    }
    findings
}

fn chained_in(l: &LinkRow, t: u8, d: &RowDigest) -> bool {
    l.row_tables.iter().zip(&l.row_digests).any(|(x, y)| *x == t && y == d)
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Finding::LinkAltered { chain_id, seq, batch_id } => {
                write!(f, "chain {chain_id} link {seq} (batch {batch_id}): its hash does not match its content")
            }
            Finding::ChainBroken { chain_id, seq, batch_id } => {
                write!(f, "chain {chain_id} link {seq} (batch {batch_id}): does not follow the link before it")
            }
            Finding::LinksMissing { chain_id, after_seq, before_seq } => {
                write!(f, "chain {chain_id}: links {}..{} are missing (batches deleted)", after_seq + 1, before_seq - 1)
            }
            Finding::RowsDeleted { batch_id, table, rows, of } => {
                if rows == of {
                    write!(f, "batch {batch_id}: deleted ({table}: all {of} rows gone)")
                } else {
                    write!(f, "batch {batch_id}: {rows} of {of} {table} rows deleted")
                }
            }
            Finding::RowsAltered { batch_id, table, rows, keys } => {
                write!(f, "batch {batch_id}: {rows} {table} row(s) altered: {}", keys.join("; "))
            }
            Finding::RowsInserted { batch_id, table, rows, keys } => {
                write!(f, "batch {batch_id}: inserted, not in any chain ({rows} {table} row(s): {})", keys.join("; "))
            }
            Finding::RootMismatch { chain_id, hour } => write!(f, "chain {chain_id}: the Merkle root of {hour} does not match its links"),
            Finding::FileAltered { attestation_id, name, sha256 } => {
                write!(f, "attestation {attestation_id}: evidence file {name} no longer has SHA-256 {sha256}: altered")
            }
            Finding::FileMissing { attestation_id, name, sha256 } => {
                write!(f, "attestation {attestation_id}: evidence file {name} (SHA-256 {sha256}) is missing")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{batch_digests, Chain};
    use super::*;
    use crate::store::Batch;

    /// `n` violations unique to this batch.
    fn batch(n: usize) -> Batch {
        let id = uuid::Uuid::now_v7().to_string();
        let ids: Vec<String> = (0..n).map(|i| format!("{id}-v{i}")).collect();
        super::super::test_support::batch(&ids.iter().map(String::as_str).collect::<Vec<_>>())
    }

    fn stored(b: &Batch) -> Vec<StoredRow> {
        batch_digests(b)
            .into_iter()
            .map(|(t, d)| StoredRow { table: t, batch_id: b.batch_id.clone(), digest: d, key: "k".into() })
            .collect()
    }

    #[test]
    fn an_intact_chain_verifies_and_each_tampering_is_named() {
        let mut chain = Chain::new("c".into());
        let bs: Vec<Batch> = (0..3).map(|_| batch(2)).collect();
        let links: Vec<LinkRow> = bs.iter().map(|b| chain.seal(b, chrono::Utc::now()).unwrap()).collect();
        let rows: Vec<StoredRow> = bs.iter().flat_map(stored).collect();
        assert!(verify(&links, &[], &rows, &[]).intact());

        // A row altered in batch 1.
        let mut altered = rows.clone();
        altered[2].digest[0] ^= 1;
        let f = verify(&links, &[], &altered, &[]).findings;
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(matches!(&f[0], Finding::RowsAltered { batch_id, rows: 1, .. } if *batch_id == bs[1].batch_id), "{f:?}");

        // Batch 2 deleted (its rows; the link stays).
        let deleted: Vec<StoredRow> = rows.iter().filter(|r| r.batch_id != bs[2].batch_id).cloned().collect();
        let f = verify(&links, &[], &deleted, &[]).findings;
        assert_eq!(f, vec![Finding::RowsDeleted { batch_id: bs[2].batch_id.clone(), table: "violations".into(), rows: 2, of: 2 }]);

        // Batch 1 deleted with its link.
        let f = verify(&[links[0].clone(), links[2].clone()], &[], &deleted, &[]).findings;
        assert!(f.contains(&Finding::LinksMissing { chain_id: "c".into(), after_seq: 1, before_seq: 3 }), "{f:?}");

        // A whole batch inserted.
        let fake = batch(1);
        let mut inserted = rows.clone();
        inserted.extend(stored(&fake).into_iter().map(|mut r| {
            r.digest[1] ^= 7;
            r
        }));
        let f = verify(&links, &[], &inserted, &[]).findings;
        assert!(matches!(&f[..], [Finding::RowsInserted { batch_id, .. }] if *batch_id == fake.batch_id), "{f:?}");

        // A redelivered copy under another batch id is not a finding.
        let mut redelivered: Vec<StoredRow> = rows.iter().filter(|r| r.batch_id != bs[0].batch_id).cloned().collect();
        redelivered.extend(stored(&bs[0]).into_iter().map(|mut r| {
            r.batch_id = "later".into();
            r
        }));
        assert!(verify(&links, &[], &redelivered, &[]).intact());

        // A link rewritten to hide an alteration.
        let mut forged = links.clone();
        forged[1].row_digests[0][0] ^= 1;
        assert!(verify(&forged, &[], &rows, &[]).findings.iter().any(|f| matches!(f, Finding::LinkAltered { seq: 2, .. })));

        // The links alone (no rows read) show the forged link and the
        // missing one, and nothing wrong with the intact chain.
        assert!(verify_links(&links, &[]).is_empty());
        assert!(matches!(&verify_links(&forged, &[])[..], [Finding::LinkAltered { seq: 2, .. }]), "{:?}", verify_links(&forged, &[]));
        let gap = verify_links(&[links[0].clone(), links[2].clone()], &[]);
        assert_eq!(gap, vec![Finding::LinksMissing { chain_id: "c".into(), after_seq: 1, before_seq: 3 }]);
    }
}
