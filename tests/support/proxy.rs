//! The real `weft` binary as a child process, on ephemeral loopback ports.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A temporary directory, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A fresh directory under the system's temp dir.
    pub fn new(tag: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!(
            "weft-test-{tag}-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The compiled-filter cache all tests share, so each module compiles once.
pub fn cache_dir() -> PathBuf {
    super::filters::repo().join("target/weft-test-cache")
}

/// A running proxy. Killed (by its pid) when dropped.
pub struct Weft {
    child: Child,
    /// Bound listeners by name.
    pub listeners: Vec<(String, SocketAddr)>,
    /// The admin address, if configured.
    pub admin: Option<SocketAddr>,
    /// The config file.
    pub config: PathBuf,
    _dir: TempDir,
}

impl Weft {
    /// Starts `weft run` on a configuration (YAML text) with 2 workers.
    pub fn start(config: &str) -> Weft {
        Self::start_with(config, &["--workers", "2"])
    }

    /// Starts `weft run` with extra arguments, and waits until it says it is ready.
    pub fn start_with(config: &str, args: &[&str]) -> Weft {
        let dir = TempDir::new("proxy");
        let path = dir.0.join("weft.yaml");
        std::fs::write(&path, config).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_weft"))
            .arg("run")
            .arg("--config")
            .arg(&path)
            .args(args)
            .env("WEFT_CACHE_DIR", cache_dir())
            .env("WEFT_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn weft");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut listeners = Vec::new();
        let mut admin = None;
        loop {
            let line = match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(l) => l,
                Err(_) => {
                    let _ = child.kill();
                    panic!("weft did not become ready; status {:?}", child.try_wait());
                }
            };
            if let Some(rest) = line.strip_prefix("weft listening: ") {
                let (name, url) = rest.split_once(' ').unwrap();
                listeners.push((
                    name.to_owned(),
                    url.trim_start_matches("http://").parse().unwrap(),
                ));
            } else if let Some(url) = line.strip_prefix("weft admin: ") {
                admin = Some(url.trim_start_matches("http://").parse().unwrap());
            } else if line.starts_with("weft ready") {
                break;
            }
        }
        Weft {
            child,
            listeners,
            admin,
            config: path,
            _dir: dir,
        }
    }

    /// The address of a listener.
    pub fn addr(&self, name: &str) -> SocketAddr {
        self.listeners
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no listener {name}"))
            .1
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A field of /proc/<pid>/status, in kB (VmRSS, VmHWM).
    pub fn memory_kb(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{field}:")))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{field} not in /proc/pid/status"))
    }

    /// A metric's value from the admin endpoint (0 when the series is absent).
    pub async fn metric(&self, series: &str) -> f64 {
        let admin = self.admin.expect("admin configured");
        let text = super::client::get_text(&format!("http://{admin}/metrics")).await;
        text.lines()
            .find_map(|l| {
                l.strip_prefix(series)
                    .and_then(|rest| rest.strip_prefix(' '))
            })
            .map_or(0.0, |v| v.trim().parse().unwrap())
    }
}

impl Drop for Weft {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `weft` with arguments; returns the exit status, stdout and stderr.
pub fn weft_cli(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(args)
        .env("WEFT_CACHE_DIR", cache_dir())
        .output()
        .expect("run weft");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
