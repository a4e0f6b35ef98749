//! Fact paths arrive from agents as text: parsing never panics, and the
//! text facts are keyed by (`FactPath::canonical`) is the parsed path
//! written out, which parses back to the same path.
#![no_main]
use driftwatch_schemas::FactPath;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match (FactPath::parse(text), FactPath::canonical(text)) {
        (Ok(path), Ok(canonical)) => {
            assert_eq!(canonical, path.to_string(), "{text:?}");
            assert_eq!(FactPath::parse(&canonical).as_ref(), Ok(&path), "{text:?}");
        }
        (Err(a), Err(b)) => assert_eq!(a, b, "{text:?}"),
        (a, b) => panic!("{text:?}: parse {a:?}, canonical {b:?}"),
    }
});
