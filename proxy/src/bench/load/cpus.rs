//! Sets of CPU cores, as `taskset` writes them (`0`, `1-3`, `0,2`), and pinning to them.

use std::os::unix::process::CommandExt as _;
use std::process::Command;

use anyhow::{bail, Context as _};

/// A set of CPU cores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuSet(pub Vec<usize>);

impl CpuSet {
    /// Parses `0`, `1-3`, `0,2-3`.
    pub fn parse(text: &str) -> anyhow::Result<CpuSet> {
        let mut cpus = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part.split_once('-') {
                Some((a, b)) => {
                    let (a, b): (usize, usize) = (
                        a.parse().with_context(|| format!("CPU list {text:?}"))?,
                        b.parse().with_context(|| format!("CPU list {text:?}"))?,
                    );
                    if a > b {
                        bail!("CPU list {text:?}: {a}-{b} is backwards");
                    }
                    cpus.extend(a..=b);
                }
                None => cpus.push(part.parse().with_context(|| format!("CPU list {text:?}"))?),
            }
        }
        if cpus.is_empty() {
            bail!("CPU list {text:?} is empty");
        }
        cpus.sort_unstable();
        cpus.dedup();
        Ok(CpuSet(cpus))
    }

    /// The cores this machine has that are not in `self` (all of them when that
    /// leaves none).
    pub fn rest(&self) -> CpuSet {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        let rest: Vec<usize> = (0..n).filter(|c| !self.0.contains(c)).collect();
        CpuSet(if rest.is_empty() {
            (0..n).collect()
        } else {
            rest
        })
    }

    fn mask(&self) -> libc::cpu_set_t {
        // SAFETY: cpu_set_t is a plain bit set; all zeroes is the empty set.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        for &c in &self.0 {
            // SAFETY: CPU_SET writes one bit of the set it is given.
            unsafe { libc::CPU_SET(c, &mut set) };
        }
        set
    }

    /// Pins the calling thread to these cores.
    pub fn pin_current_thread(&self) {
        let set = self.mask();
        // SAFETY: `set` lives for the call; 0 is the calling thread.
        unsafe {
            libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set);
        }
    }

    /// Pins the process `cmd` starts to these cores.
    pub fn pin_child(&self, cmd: &mut Command) {
        let set = self.mask();
        // SAFETY: the closure only calls sched_setaffinity, which is async-signal-safe.
        unsafe {
            cmd.pre_exec(move || {
                libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set);
                Ok(())
            });
        }
    }
}

impl std::fmt::Display for CpuSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&list.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_parse_as_taskset_writes_them() {
        assert_eq!(CpuSet::parse("0").unwrap().0, vec![0]);
        assert_eq!(CpuSet::parse("1-3,0").unwrap().0, vec![0, 1, 2, 3]);
        assert!(CpuSet::parse("3-1").is_err());
        assert!(CpuSet::parse("x").is_err());
        assert!(CpuSet::parse("").is_err());
    }
}
