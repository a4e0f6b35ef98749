//! A record's signature headers come from whoever wrote to the topic:
//! reading and checking them never panics, whatever their bytes, and a
//! signature over other bytes never verifies.
#![no_main]
use driftwatch_schemas::identity::{verify, KeyPair};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // signer | signature | payload, split at the first two 0xff bytes.
    let mut parts = data.splitn(3, |b| *b == 0xff);
    let (signer, signature, payload) = (parts.next(), parts.next(), parts.next().unwrap_or_default());
    let _ = verify(signer, signature, payload);
    // A real key's signature of the payload, checked against other bytes.
    let key = KeyPair::from_seed(&[9; 32]);
    let (header, sig) = key.sign(payload);
    assert_eq!(verify(Some(header.as_bytes()), Some(sig.as_bytes()), payload), Ok(Some(key.public())));
    let mut altered = payload.to_vec();
    altered.push(0);
    assert!(verify(Some(header.as_bytes()), Some(sig.as_bytes()), &altered).is_err());
});
