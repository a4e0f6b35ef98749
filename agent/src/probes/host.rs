//! Host metrics as a probe (kind `host`): CPU use since the previous
//! sample, memory, the fullest local disk, the 1-minute load, from sysinfo.

use driftwatch_schemas::{HostMetrics, ProbeKind, SlaMeasurement};
use sysinfo::{Disks, System};

use super::Started;

/// Keeps the state CPU use is measured against between samples.
pub struct HostSampler {
    system: System,
    disks: Disks,
}

impl Default for HostSampler {
    fn default() -> Self {
        Self::new()
    }
}

impl HostSampler {
    pub fn new() -> HostSampler {
        let mut system = System::new();
        system.refresh_cpu_usage();
        HostSampler { system, disks: Disks::new_with_refreshed_list() }
    }

    /// The metrics now (CPU: since the previous call, or since creation).
    pub fn metrics(&mut self) -> HostMetrics {
        self.system.refresh_cpu_usage();
        self.system.refresh_memory();
        self.disks.refresh(true);
        let disk_used_percent = self
            .disks
            .iter()
            .filter(|d| d.total_space() > 0 && !d.is_removable())
            .map(|d| 100.0 * (d.total_space() - d.available_space().min(d.total_space())) as f64 / d.total_space() as f64)
            .fold(0.0, f64::max);
        let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        HostMetrics {
            cpu_percent: f64::from(self.system.global_cpu_usage()),
            memory_used_bytes: clamp(self.system.used_memory()),
            memory_total_bytes: clamp(self.system.total_memory()),
            disk_used_percent,
            load1: System::load_average().one,
        }
    }

    /// One measurement of kind `host`.
    pub fn sample(&mut self, asset_id: &str, probe_id: &str) -> SlaMeasurement {
        let start = Started::now();
        let metrics = self.metrics();
        let mut m = start.measured(asset_id, probe_id, "host", ProbeKind::Host, None);
        m.host_metrics = Some(metrics);
        m
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn metrics_are_plausible() {
        let mut s = super::HostSampler::new();
        std::thread::sleep(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL);
        let m = s.sample("a", "host").host_metrics.unwrap();
        assert!(m.memory_total_bytes > 0 && m.memory_used_bytes > 0 && m.memory_used_bytes <= m.memory_total_bytes, "{m:?}");
        assert!((0.0..=100.0).contains(&m.cpu_percent) && (0.0..=100.0).contains(&m.disk_used_percent), "{m:?}");
        assert!(m.load1 >= 0.0);
    }
}
