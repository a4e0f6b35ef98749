//! Hourly Merkle roots: the collector doing fleet-wide work computes, for
//! every chain and every completed hour of the past two days without one,
//! the root over that hour's link hashes, and stores it.

use std::collections::BTreeMap;

use chrono::{DateTime, DurationRound, Utc};

use super::{merkle_root, LinkRow};

/// Roots for the hours of `links` that end before `now` minus a margin
/// and are not in `done` ((chain, hour) already stored): (chain, hour,
/// root, first seq, last seq, links).
pub fn due(links: &[LinkRow], done: &[(String, DateTime<Utc>)], now: DateTime<Utc>) -> Vec<(String, DateTime<Utc>, String, u64, u64, u32)> {
    let mut hours: BTreeMap<(String, DateTime<Utc>), Vec<&LinkRow>> = BTreeMap::new();
    for l in links {
        let at = crate::store::time(l.at);
        let hour = at.duration_trunc(chrono::Duration::hours(1)).unwrap_or(at);
        hours.entry((l.chain_id.clone(), hour)).or_default().push(l);
    }
    hours
        .into_iter()
        .filter(|((chain, hour), _)| *hour + chrono::Duration::minutes(65) < now && !done.iter().any(|(c, h)| c == chain && h == hour))
        .map(|((chain, hour), mut ls)| {
            ls.sort_by_key(|l| l.seq);
            let hashes: Vec<String> = ls.iter().map(|l| l.hash.clone()).collect();
            let (first, last) = (ls[0].seq, ls[ls.len() - 1].seq);
            (chain, hour, merkle_root(&hashes), first, last, ls.len() as u32)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::test_support::batch;
    use crate::evidence::verify::{verify, Finding, StoredRoot};
    use crate::evidence::Chain;

    #[test]
    fn completed_hours_get_a_root_that_verify_checks() {
        let hour = chrono::DateTime::parse_from_rfc3339("2026-11-23T10:00:00Z").unwrap().with_timezone(&Utc);
        let mut chain = Chain::new("c".into());
        let links: Vec<LinkRow> =
            (0..4).map(|i| chain.seal(&batch(&[&format!("v{i}")]), hour + chrono::Duration::minutes(10 * i as i64)).unwrap()).collect();
        assert!(due(&links, &[], hour + chrono::Duration::minutes(50)).is_empty(), "the hour is not over");
        let roots = due(&links, &[], hour + chrono::Duration::hours(2));
        assert_eq!(roots.len(), 1);
        let (chain_id, h, root, first, last, n) = roots[0].clone();
        assert_eq!((chain_id.as_str(), h, first, last, n), ("c", hour, 1, 4, 4));
        assert!(due(&links, &[("c".into(), hour)], hour + chrono::Duration::hours(2)).is_empty(), "already stored");
        let stored = StoredRoot { chain_id: "c".into(), hour, root: root.clone(), first_seq: 1, last_seq: 4 };
        assert!(verify(&links, &[], &[], std::slice::from_ref(&stored))
            .findings
            .iter()
            .all(|f| !matches!(f, Finding::RootMismatch { .. })));
        let forged = StoredRoot { root: crate::evidence::GENESIS.into(), ..stored };
        assert!(verify(&links, &[], &[], &[forged]).findings.iter().any(|f| matches!(f, Finding::RootMismatch { .. })));
    }
}
