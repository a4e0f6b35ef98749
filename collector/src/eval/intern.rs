//! Strings shared by every asset's CEL values: fact path segments and
//! short fact values (`config`, `permitrootlogin`, `no`, `0644`, a package
//! version) repeat across a fleet, so each is kept once for the process
//! instead of once per asset. Bounded: a host that sends ever new names
//! fills it to [`MAX_BYTES`] or [`MAX_STRINGS`] at most (about 100 MB with
//! the set's table), after which strings are simply not
//! shared (each asset keeps its own copy, as before); nothing is ever
//! refused or lost.

use std::collections::HashSet;
use std::sync::{LazyLock, RwLock};

/// The most bytes of strings kept (their text).
pub const MAX_BYTES: usize = 64 << 20;

/// The most strings kept: with the bytes above, this bounds the set's own
/// table too (a host sending ever new one-letter names fills this first).
pub const MAX_STRINGS: usize = 1 << 20;

/// Strings longer than this are not shared: long values are rarely the
/// same on two hosts.
pub const MAX_LEN: usize = 64;

struct Interned {
    strings: HashSet<&'static str>,
    bytes: usize,
}

static INTERNED: LazyLock<RwLock<Interned>> = LazyLock::new(|| RwLock::new(Interned { strings: HashSet::new(), bytes: 0 }));

/// `s`, shared with every other holder of the same text, or `None` when
/// it is too long or the set is full.
pub fn intern(s: &str) -> Option<&'static str> {
    if s.len() > MAX_LEN {
        return None;
    }
    if let Some(found) = INTERNED.read().unwrap_or_else(|p| p.into_inner()).strings.get(s) {
        return Some(found);
    }
    let mut w = INTERNED.write().unwrap_or_else(|p| p.into_inner());
    if let Some(found) = w.strings.get(s) {
        return Some(found);
    }
    if w.bytes + s.len() > MAX_BYTES || w.strings.len() >= MAX_STRINGS {
        return None;
    }
    // Kept for the life of the process, by design (bounded above).
    let leaked: &'static str = Box::leak(s.to_owned().into_boxed_str());
    w.bytes += leaked.len();
    w.strings.insert(leaked);
    Some(leaked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_strings_are_one_and_long_ones_are_not_shared() {
        let a = intern("permitrootlogin").unwrap();
        let b = intern(&String::from("permitrootlogin")).unwrap();
        assert!(std::ptr::eq(a, b), "one copy");
        assert_eq!(intern(&"x".repeat(MAX_LEN + 1)), None);
        assert_eq!(intern(""), Some(""));
    }
}
