//! The ClickHouse side of [`AttestationLog`].

use async_trait::async_trait;

use super::ClickHouseStore;
use crate::store::attestations::{AttestationFileRow, AttestationLog, AttestationRow};
use crate::store::StoreError;

#[async_trait]
impl AttestationLog for ClickHouseStore {
    async fn put_attestation(&self, attestation: &AttestationRow, files: &[AttestationFileRow]) -> Result<(), StoreError> {
        if !files.is_empty() {
            self.insert_rows("attestation_files", files).await?;
        }
        self.insert_rows("attestations", std::slice::from_ref(attestation)).await
    }

    async fn attestations(&self) -> Result<Vec<AttestationRow>, StoreError> {
        self.fetch(driftwatch_schemas::clickhouse::ATTESTATIONS_SQL).await
    }

    async fn attestation_file(&self, sha256: &str) -> Result<Option<AttestationFileRow>, StoreError> {
        let rows: Vec<AttestationFileRow> =
            self.fetch_bound(driftwatch_schemas::clickhouse::ATTESTATION_FILE_SQL, |q| q.bind(sha256)).await?;
        Ok(rows.into_iter().next())
    }
}
