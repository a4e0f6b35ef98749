//! Any bytes on any topic: a message or a precise error, never a panic.
#![no_main]
use driftwatch_schemas::{Decoder, Stream};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    thread_local!(static DECODER: Decoder = Decoder::new().expect("the compiled-in schemas"));
    DECODER.with(|d| {
        for stream in Stream::ALL {
            let _ = d.decode(stream, data);
        }
    });
});
