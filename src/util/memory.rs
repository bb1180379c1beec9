//! The process's resident memory, as the benchmarks report it beside speed.

use std::fs;

/// `/proc/self/status`: Linux's per-process memory counters.
const STATUS_FILE: &str = "/proc/self/status";
/// The current resident set, and its high-water mark since the process started.
const CURRENT_KEY: &str = "VmRSS:";
const PEAK_KEY: &str = "VmHWM:";
const KIB_PER_MIB: f64 = 1024.0;

/// Resident memory in MiB; `None` where the system does not say (not Linux).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ResidentMemory {
    pub current_mib: f64,
    pub peak_mib: f64,
}

impl ResidentMemory {
    pub fn read() -> Option<Self> {
        let status = fs::read_to_string(STATUS_FILE).ok()?;
        Some(Self {
            current_mib: field_mib(&status, CURRENT_KEY)?,
            peak_mib: field_mib(&status, PEAK_KEY)?,
        })
    }
}

/// A `Key:   1234 kB` line of `status`, in MiB.
fn field_mib(status: &str, key: &str) -> Option<f64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    let kib: f64 = line[key.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / KIB_PER_MIB)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_status_fields() {
        let status = "Name:\tx\nVmHWM:\t  20480 kB\nVmRSS:\t   10240 kB\n";
        assert_eq!(field_mib(status, CURRENT_KEY), Some(10.0));
        assert_eq!(field_mib(status, PEAK_KEY), Some(20.0));
        assert_eq!(field_mib(status, "VmSwap:"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_peak_grows_with_what_is_touched() {
        let before = ResidentMemory::read().expect("Linux reports resident memory");
        let block = vec![1u8; 64 << 20];
        let after = ResidentMemory::read().unwrap();
        assert!(block.iter().all(|&b| b == 1));
        assert!(
            after.peak_mib >= before.current_mib + 60.0,
            "{before:?} -> {after:?}"
        );
        assert!(after.peak_mib >= after.current_mib);
    }
}
