//! The process's own resource usage, read from the OS (`/proc/self`) at the
//! moment it is asked for — never a constant. Linux only: on every other
//! system (macOS has no `/proc`) each reading is `None`, so `/status` reports
//! `memory_rss_bytes: null` and the `process_*` metrics are absent.

use std::fmt::Write as _;

/// Linux reports CPU times in clock ticks of `USER_HZ`, which is 100 on every
/// architecture Linux supports for userspace (`sysconf(_SC_CLK_TCK)`).
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

/// Resident memory in bytes (`VmRSS`).
pub fn resident_memory_bytes() -> Option<u64> {
    status_kib("VmRSS:").map(|kib| kib * 1024)
}

fn virtual_memory_bytes() -> Option<u64> {
    status_kib("VmSize:").map(|kib| kib * 1024)
}

/// A file under `/proc`, on Linux only (the formats below are Linux's).
fn read_proc(path: &str) -> Option<String> {
    if cfg!(target_os = "linux") {
        std::fs::read_to_string(path).ok()
    } else {
        None
    }
}

fn status_kib(field: &str) -> Option<u64> {
    let status = read_proc("/proc/self/status")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// Fields of `/proc/self/stat` after the command name (which may contain
/// spaces and parentheses, so split after the last `)`).
fn stat_fields() -> Option<Vec<String>> {
    let stat = read_proc("/proc/self/stat")?;
    let after = &stat[stat.rfind(')')? + 1..];
    Some(after.split_whitespace().map(str::to_owned).collect())
}

/// User + system CPU time in seconds.
fn cpu_seconds() -> Option<f64> {
    let f = stat_fields()?;
    // After the name: state is index 0, utime is 11, stime is 12 (fields 14 and 15).
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / CLOCK_TICKS_PER_SECOND)
}

/// Start time as seconds since the Unix epoch.
fn start_time_seconds() -> Option<f64> {
    let f = stat_fields()?;
    let start_ticks: f64 = f.get(19)?.parse().ok()?; // field 22
    let boot_time: f64 = read_proc("/proc/stat")?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    Some(boot_time + start_ticks / CLOCK_TICKS_PER_SECOND)
}

fn open_fds() -> Option<u64> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count() as u64)
}

fn max_fds() -> Option<u64> {
    let limits = read_proc("/proc/self/limits")?;
    limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|soft| soft.parse().ok())
}

/// The standard `process_*` metrics in Prometheus text format.
pub fn prometheus_text() -> String {
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: Option<f64>| {
        if let Some(v) = value {
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n\n"
            );
        }
    };
    metric(
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size in bytes.",
        resident_memory_bytes().map(|v| v as f64),
    );
    metric(
        "process_virtual_memory_bytes",
        "gauge",
        "Virtual memory size in bytes.",
        virtual_memory_bytes().map(|v| v as f64),
    );
    metric(
        "process_cpu_seconds_total",
        "counter",
        "Total user and system CPU time spent in seconds.",
        cpu_seconds(),
    );
    metric(
        "process_open_fds",
        "gauge",
        "Number of open file descriptors.",
        open_fds().map(|v| v as f64),
    );
    metric(
        "process_max_fds",
        "gauge",
        "Maximum number of open file descriptors.",
        max_fds().map(|v| v as f64),
    );
    metric(
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since unix epoch in seconds.",
        start_time_seconds(),
    );
    out
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn readings_come_from_the_os_and_move() {
        let before = resident_memory_bytes().expect("VmRSS on Linux");
        assert!(before > 0);
        // Touch 32 MiB so the resident size must grow: proves it is measured.
        // black_box: an optimised build may otherwise drop the unread block
        // (the release-profile musl run of the sandbox rehearsal did).
        let block = vec![1u8; 32 << 20];
        std::hint::black_box(&block);
        let after = resident_memory_bytes().unwrap();
        assert!(after >= before + (16 << 20), "{before} -> {after}");
        drop(block);
        assert!(open_fds().unwrap() >= 3);
        assert!(max_fds().unwrap() >= open_fds().unwrap());
        let started = start_time_seconds().unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(
            started <= now + 1.0 && started > now - 3600.0,
            "{started} vs {now}"
        );
        assert!(cpu_seconds().unwrap() >= 0.0);
    }

    #[test]
    fn text_has_help_and_type_for_each_metric() {
        let text = prometheus_text();
        for name in [
            "process_resident_memory_bytes",
            "process_cpu_seconds_total",
            "process_open_fds",
            "process_max_fds",
            "process_start_time_seconds",
        ] {
            assert!(
                text.contains(&format!("# HELP {name} ")),
                "{name} in\n{text}"
            );
            assert!(text.contains(&format!("# TYPE {name} ")), "{name}");
        }
    }
}

#[cfg(all(test, not(target_os = "linux")))]
mod tests_elsewhere {
    use super::*;

    #[test]
    fn nothing_is_reported_without_proc() {
        assert_eq!(resident_memory_bytes(), None);
        assert_eq!(open_fds(), None);
        assert_eq!(prometheus_text(), "");
    }
}
