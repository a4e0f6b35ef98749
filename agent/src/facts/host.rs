//! `host.*`: the running machine, through sysinfo: kernel, architecture,
//! OS, boot time, CPUs, memory, disks. These describe the *live* system the
//! agent runs on, so they are collected only when the root is that system
//! (see `facts.live_host`), never for a mounted tree or a fixture.
//!
//! Only stable values are reported (boot time, not uptime; disk size, not
//! free space), so a watched-file delta does not carry noise; moving
//! figures belong to the host-metrics probe.

use driftwatch_schemas::FactPath;
use sysinfo::{Disks, System};

use super::Facts;

pub fn collect(facts: &mut Facts) {
    let h = FactPath::new(["host"]);
    let mut sys = System::new();
    sys.refresh_memory();
    sys.refresh_cpu_list(sysinfo::CpuRefreshKind::nothing());
    if let Some(k) = System::kernel_version() {
        facts.set(&h.child("kernel"), k);
    }
    facts.set(&h.child("arch"), System::cpu_arch());
    if let Some(v) = System::long_os_version() {
        facts.set(&h.child("os"), v);
    }
    if let Some(n) = System::host_name() {
        facts.set(&h.child("hostname"), n);
    }
    facts.set(&h.child("boot_time"), System::boot_time() as i64);
    facts.set(&h.child("cpu_count"), sys.cpus().len() as i64);
    facts.set(&h.child("memory_total_bytes"), sys.total_memory() as i64);
    let disks = Disks::new_with_refreshed_list();
    for d in disks.list() {
        let p = h.child("disk").child(d.mount_point().to_string_lossy().into_owned());
        facts.set(&p.child("total_bytes"), d.total_space() as i64);
        facts.set(&p.child("filesystem"), d.file_system().to_string_lossy().into_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use driftwatch_schemas::FactValue;

    #[test]
    fn reports_the_live_machine() {
        let mut f = Facts::default();
        collect(&mut f);
        assert!(matches!(f.0["host.cpu_count"], FactValue::Int(n) if n >= 1));
        assert!(matches!(f.0["host.memory_total_bytes"], FactValue::Int(n) if n > 0));
        assert_eq!(f.0["host.arch"], FactValue::Str(std::env::consts::ARCH.to_string()));
    }
}
