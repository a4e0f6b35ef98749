//! Any /etc/sudoers: parsed (unknown lines ignored or reported), never a panic.
#![no_main]
use driftwatch_agent::root::HostRoot;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    thread_local!(static TREE: tempfile::TempDir = tempfile::tempdir().expect("a temporary host tree"));
    TREE.with(|tree| {
        let file = tree.path().join("etc/sudoers");
        std::fs::create_dir_all(file.parent().expect("a parent")).expect("mkdir");
        std::fs::write(&file, data).expect("write");
        let _ = driftwatch_agent::facts::sudo::parse(&HostRoot::new(tree.path()));
    });
});
