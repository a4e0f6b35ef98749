//! The in-process transport of the single-node mode: the local agent's
//! spool, read in the same process instead of through a broker. Records
//! are the very Avro payloads the agent would send to Kafka, decoded by the
//! same decoder; a record is acknowledged in the spool once its batch is
//! stored, so a crash loses nothing (what was not acknowledged is read
//! again, and the store folds what was already stored).

use driftwatch_agent::ship::local::SpoolReader;
use driftwatch_agent::ship::spool::Pos;
use driftwatch_schemas::limits::Limits;
use driftwatch_schemas::Message;

use super::Source;

/// The local agent's spool as a [`Source`].
pub struct LocalSource {
    reader: SpoolReader,
    decoder: super::decode::RecordDecoder,
    /// Undecodable records read since the last commit: acknowledged with
    /// it (the spool's position only moves past stored records).
    skipped: Vec<Pos>,
    /// The memory ceiling: nothing is read while set.
    paused: bool,
}

impl LocalSource {
    /// Reads `reader`; the local agent is the operator's own, in-process,
    /// so its labels are taken as they are (operator rules still apply).
    pub fn new(reader: SpoolReader, limits: &Limits, labels: crate::assets::AssetLabels) -> anyhow::Result<Self> {
        let decoder = super::decode::RecordDecoder::new(&Default::default(), limits)?.with_labels(labels.trusting_host());
        Ok(LocalSource { reader, decoder, skipped: Vec::new(), paused: false })
    }
}

#[async_trait::async_trait]
impl Source for LocalSource {
    type Ack = Pos;

    async fn recv(&mut self) -> Option<(Message, Pos)> {
        if self.paused {
            // Resumed by the loop, which cancels this wait at its next tick.
            std::future::pending::<()>().await;
        }
        loop {
            let (rec, next) = self.reader.next().await;
            let stream = match rec.stream {
                driftwatch_schemas::Stream::Snapshots => "snapshots",
                driftwatch_schemas::Stream::Audit => "audit",
                driftwatch_schemas::Stream::Sla => "sla",
            };
            match self.decoder.decode_stream(rec.stream, stream, &rec.payload) {
                Ok(msg) => return Some((msg, next)),
                Err(e) => {
                    // No dead-letter topic here: the record is logged,
                    // counted and skipped (it would fail again).
                    crate::metrics::METRICS.records.with_label_values(&[stream, "dead_lettered"]).inc();
                    tracing::error!(stream, error = %e, "spooled record cannot be decoded; skipped");
                    self.skipped.push(next);
                }
            }
        }
    }

    fn pause(&mut self, paused: bool) {
        self.paused = paused;
    }

    async fn commit(&mut self, mut acks: Vec<Pos>) {
        acks.append(&mut self.skipped);
        acks.sort();
        self.reader.ack(&acks);
    }
}
