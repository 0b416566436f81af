//! The machine the benchmarks run on, from `/proc/stat`: how busy all CPUs were and how much
//! time the hypervisor stole, so a noisy run can be recognised. Zeros where `/proc` is absent.

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
