//! The SQLite side of [`EvidenceStore`].

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{docs, json_list, Doc, SqliteStore};
use crate::store::evidence::LinkRow;
use crate::store::evidence::{ChainHead, Chained, EvidenceStore};
use crate::store::evidence::{StoredRoot, StoredRow};
use crate::store::records::{RootRow, RootWriteRow};
use crate::store::rows::*;
use crate::store::{secs, StoreError};

/// The digests of `T`'s rows of `ids` (a JSON list of batch ids).
fn digests<T: Doc + Chained>(c: &rusqlite::Connection, ids: &str, out: &mut Vec<StoredRow>) -> rusqlite::Result<()> {
    out.extend(docs::<T>(c, "batch_id IN (SELECT value FROM json_each(?1))", None, &[&ids])?.iter().map(Chained::stored));
    Ok(())
}

#[async_trait]
impl EvidenceStore for SqliteStore {
    async fn evidence_links(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<LinkRow>, StoreError> {
        let (f, t) = (i64::from(secs(&from)), i64::from(secs(&to)));
        self.with(move |c| {
            let mut links = docs::<LinkRow>(c, "at >= ?1 AND at <= ?2", None, &[&f, &t])?;
            links.sort_by(|a, b| (&a.chain_id, a.seq).cmp(&(&b.chain_id, b.seq)));
            Ok(links)
        })
        .await
    }

    async fn evidence_heads(&self, chain: Option<&str>, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<ChainHead>, StoreError> {
        let chain = chain.unwrap_or_default().to_string();
        let links = self.evidence_links(from, to).await?;
        let mut heads: BTreeMap<String, ChainHead> = BTreeMap::new();
        // In chain order: the last link seen of a chain is its head.
        for l in links.into_iter().filter(|l| chain.is_empty() || l.chain_id == chain) {
            let h = heads.entry(l.chain_id.clone()).or_insert_with(|| ChainHead {
                chain_id: l.chain_id.clone(),
                links: 0,
                first_seq: l.seq,
                last_seq: l.seq,
                head: String::new(),
                last_at: 0,
            });
            h.links += 1;
            h.last_seq = l.seq;
            h.head = l.hash;
            h.last_at = h.last_at.max(l.at);
        }
        Ok(heads.into_values().collect())
    }

    async fn evidence_links_for(&self, batches: &[String]) -> Result<Vec<LinkRow>, StoreError> {
        let ids = json_list(batches);
        self.with(move |c| {
            let mut links = docs::<LinkRow>(c, "batch_id IN (SELECT value FROM json_each(?1))", None, &[&ids])?;
            links.sort_by(|a, b| (&a.chain_id, a.seq).cmp(&(&b.chain_id, b.seq)));
            Ok(links)
        })
        .await
    }

    async fn evidence_roots(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<StoredRoot>, StoreError> {
        let (f, t) = (i64::from(secs(&from)), i64::from(secs(&to)));
        self.with(move |c| {
            let mut roots: Vec<RootRow> = docs::<RootWriteRow>(c, "at >= ?1 AND at <= ?2", None, &[&f, &t])?
                .into_iter()
                .map(|r| RootRow {
                    chain_id: r.chain_id,
                    hour: r.hour,
                    root: r.root,
                    first_seq: r.first_seq,
                    last_seq: r.last_seq,
                    links: r.links,
                })
                .collect();
            roots.sort_by(|a, b| (&a.chain_id, a.hour).cmp(&(&b.chain_id, b.hour)));
            Ok(roots.into_iter().map(RootRow::into_stored).collect())
        })
        .await
    }

    async fn put_root(
        &self,
        chain_id: &str,
        hour: DateTime<Utc>,
        root: String,
        first_seq: u64,
        last_seq: u64,
        links: u32,
    ) -> Result<(), StoreError> {
        let row = RootWriteRow::new(chain_id, hour, root, (first_seq, last_seq), links, Utc::now());
        self.put(vec![row]).await
    }

    async fn evidence_rows(
        &self,
        batches: &BTreeSet<String>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<StoredRow>, StoreError> {
        let (f, t) = (i64::from(secs(&from)), i64::from(secs(&to)));
        let batches = batches.clone();
        self.with(move |c| {
            let mut ids = batches;
            let mut stmt = c.prepare_cached(
                "SELECT DISTINCT batch_id FROM rows WHERE tbl IN (SELECT value FROM json_each(?1)) AND batch_id != '' AND at >= ?2 AND at <= ?3",
            )?;
            let tables = json_list(&crate::store::digest::TABLES.map(String::from));
            for id in stmt.query_map(rusqlite::params![tables, f, t], |r| r.get::<_, String>(0))? {
                ids.insert(id?);
            }
            let ids = json_list(&ids.into_iter().collect::<Vec<_>>());
            let mut out = Vec::new();
            digests::<SnapshotRow>(c, &ids, &mut out)?;
            digests::<FactRow>(c, &ids, &mut out)?;
            digests::<AuditRow>(c, &ids, &mut out)?;
            digests::<SlaRow>(c, &ids, &mut out)?;
            digests::<EvaluationRow>(c, &ids, &mut out)?;
            digests::<ViolationRow>(c, &ids, &mut out)?;
            digests::<DriftRow>(c, &ids, &mut out)?;
            digests::<ConfirmationRow>(c, &ids, &mut out)?;
            Ok(out)
        })
        .await
    }
}
