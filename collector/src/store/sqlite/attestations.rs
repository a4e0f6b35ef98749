//! The SQLite side of [`AttestationLog`].

use async_trait::async_trait;

use super::{docs, put, SqliteStore};
use crate::store::attestations::{AttestationFileRow, AttestationLog, AttestationRow};
use crate::store::StoreError;

#[async_trait]
impl AttestationLog for SqliteStore {
    async fn put_attestation(&self, attestation: &AttestationRow, files: &[AttestationFileRow]) -> Result<(), StoreError> {
        let (a, files) = (attestation.clone(), files.to_vec());
        self.with(move |c| {
            let tx = c.transaction()?;
            put(&tx, &files)?;
            put(&tx, &[a])?;
            tx.commit()
        })
        .await
    }

    async fn attestations(&self) -> Result<Vec<AttestationRow>, StoreError> {
        self.with(|c| docs::<AttestationRow>(c, "1", None, &[])).await
    }

    async fn attestation_file(&self, sha256: &str) -> Result<Option<AttestationFileRow>, StoreError> {
        let sha256 = sha256.to_string();
        self.with(move |c| Ok(docs::<AttestationFileRow>(c, "subject = ?1", None, &[&sha256])?.into_iter().next())).await
    }
}
