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
        let mut all = vec![
            "run".to_owned(),
            "--config".to_owned(),
            path.display().to_string(),
        ];
        all.extend(args.iter().map(|a| a.to_string()));
        Self::spawn(&all, path, dir)
    }

    /// Starts `weft run` taking its configuration from a control plane: `args` are
    /// `--control` and the like; `--state-dir` is a fresh directory unless given.
    pub fn start_controlled(args: &[&str]) -> Weft {
        let dir = TempDir::new("controlled");
        let mut all = vec!["run".to_owned()];
        all.extend(args.iter().map(|a| a.to_string()));
        let state = if let Some(i) = args.iter().position(|a| *a == "--state-dir") {
            PathBuf::from(args[i + 1])
        } else {
            all.push("--state-dir".into());
            all.push(dir.0.display().to_string());
            dir.0.clone()
        };
        Self::spawn(&all, state.join("current.yaml"), dir)
    }

    fn spawn(args: &[String], config: PathBuf, dir: TempDir) -> Weft {
        let (child, lines) = spawn_weft(args);
        let mut listeners = Vec::new();
        let mut admin = None;
        let mut child = child;
        loop {
            let line = match lines.recv_timeout(Duration::from_secs(90)) {
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
            config,
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

/// Starts the `weft` binary with `args`; its stdout lines arrive on the channel.
pub fn spawn_weft(args: &[String]) -> (Child, mpsc::Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(args)
        .env("WEFT_CACHE_DIR", cache_dir())
        .env(
            "WEFT_LOG",
            std::env::var("WEFT_LOG").unwrap_or_else(|_| "warn".into()),
        )
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
    (child, rx)
}

/// A running control plane (`weft control serve`). Killed when dropped.
pub struct ControlPlane {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl ControlPlane {
    /// Starts one on a store directory, on `listen` (port 0 for any).
    pub fn start(store: &std::path::Path, listen: &str) -> ControlPlane {
        Self::start_with(store, listen, &[])
    }

    /// [`ControlPlane::start`] with more arguments (`--etcd ADDR`).
    pub fn start_with(store: &std::path::Path, listen: &str, extra: &[&str]) -> ControlPlane {
        let args: Vec<String> = ["control", "serve", "--listen", listen, "--store"]
            .iter()
            .map(|s| s.to_string())
            .chain([store.display().to_string()])
            .chain(extra.iter().map(|s| s.to_string()))
            .collect();
        let (mut child, lines) = spawn_weft(&args);
        let mut addr = None;
        loop {
            let Ok(line) = lines.recv_timeout(Duration::from_secs(30)) else {
                let _ = child.kill();
                panic!("weft control did not start");
            };
            if let Some(rest) = line.strip_prefix("weft control listening: http://") {
                addr = rest.split_whitespace().next().map(|a| a.parse().unwrap());
            } else if line.starts_with("weft ready") {
                break;
            }
        }
        ControlPlane {
            child,
            addr: addr.expect("an address"),
        }
    }

    /// Stops it (SIGKILL).
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ControlPlane {
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

/// A loopback address with a port free right now (for a peer told where to listen).
pub fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A real etcd (Debian's `etcd-server`) on free loopback ports, with its data in a
/// temporary directory. Killed when dropped.
pub struct EtcdServer {
    child: Child,
    /// The client address.
    pub addr: SocketAddr,
    _dir: TempDir,
}

impl EtcdServer {
    /// Starts one and waits until it answers.
    pub fn start() -> EtcdServer {
        let dir = TempDir::new("etcd");
        let (client, peer) = (free_addr(), free_addr());
        let child = Command::new("etcd")
            .args([
                "--name",
                "weft-test",
                "--data-dir",
                &dir.0.join("data").display().to_string(),
                "--listen-client-urls",
                &format!("http://{client}"),
                "--advertise-client-urls",
                &format!("http://{client}"),
                "--listen-peer-urls",
                &format!("http://{peer}"),
                "--initial-advertise-peer-urls",
                &format!("http://{peer}"),
                "--initial-cluster",
                &format!("weft-test=http://{peer}"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcd (Debian's etcd-server; `make test` installs it)");
        let mut server = EtcdServer {
            child,
            addr: client,
            _dir: dir,
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let ok = healthy(client);
            if ok {
                return server;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("etcd exited: {status}");
            }
            assert!(
                std::time::Instant::now() < deadline,
                "etcd did not become healthy"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn healthy(addr: SocketAddr) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /health HTTP/1.0\r\nHost: etcd\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.contains("\"health\":\"true\"")
}
