//! The machine the benchmarks run on, from `/proc`: how busy all CPUs were and how much time
//! the hypervisor stole, so a noisy run can be recognised, and the CPU time of a process.
//! Zeros where `/proc` is absent.

use std::process::Command;
use std::sync::OnceLock;

/// Machine-wide CPU jiffies from /proc/stat: (busy, steal, total). Busy includes steal (time
/// the hypervisor gave this VM's CPUs to someone else).
pub fn machine() -> (u64, u64, u64) {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<u64> = text
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total - idle, v.get(7).copied().unwrap_or(0), total)
}

/// (busy fraction, steal fraction) of all CPUs between two [`machine`] readings.
pub fn busy_steal(a: (u64, u64, u64), b: (u64, u64, u64)) -> (f64, f64) {
    let total = b.2.saturating_sub(a.2).max(1) as f64;
    (
        b.0.saturating_sub(a.0) as f64 / total,
        b.1.saturating_sub(a.1) as f64 / total,
    )
}

/// User + system CPU seconds of a process so far.
pub fn cpu_secs(pid: u32) -> f64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses and may contain spaces).
    let rest = text.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the whole line; 12 and 13 after the name.
    (ticks(11) + ticks(12)) / clock_ticks()
}

fn clock_ticks() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// The parent pid of a process, from `/proc/PID/stat`.
fn parent_of(pid: u32) -> Option<u32> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = text.rsplit_once(')')?.1;
    // After the name: state, then ppid.
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// User + system CPU seconds of `parent` and its children: a server that forks a process per
/// connection (PostgreSQL) as one figure. A child that exited in between is not counted, so
/// compare readings over a span in which the connections stay open (printbell pools them).
pub fn tree_cpu_secs(parent: u32) -> f64 {
    let children: f64 = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| parent_of(*pid) == Some(parent))
        .map(cpu_secs)
        .sum();
    cpu_secs(parent) + children
}

/// The server process (PostgreSQL's postmaster) that forked backend `backend`, if it runs on
/// this machine.
pub fn server_of_backend(backend: u32) -> Option<u32> {
    parent_of(backend).filter(|p| *p > 1)
}
