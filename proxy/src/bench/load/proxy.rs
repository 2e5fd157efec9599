//! The proxy under load: its configuration rewritten to listen on free loopback ports
//! and send every cluster's traffic to the built-in upstream, started as a child
//! process pinned to its cores, and its CPU time read from `/proc`.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde_yaml::{Mapping, Value};

use super::cpus::CpuSet;

/// The listener and route `weft bench --load` adds: the same proxy without filters.
pub const BASELINE: &str = "weft-bench-no-filters";

/// A running proxy; stopped (by its process id) and its configuration removed when
/// dropped.
pub struct Proxy {
    child: Child,
    config: PathBuf,
    /// Each listener's name and the address it was moved to.
    pub listeners: Vec<(String, SocketAddr)>,
}

fn free_port() -> anyhow::Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?)
}

/// `config` with listeners on free loopback ports, every cluster's endpoints replaced
/// by `upstream`, no admin endpoint, and a listener without filters whose only route
/// goes to `baseline_cluster`.
fn rewrite(
    config: &Path,
    upstream: SocketAddr,
    baseline_cluster: &str,
) -> anyhow::Result<(String, Vec<(String, SocketAddr)>)> {
    let text =
        std::fs::read_to_string(config).with_context(|| format!("reading {}", config.display()))?;
    let mut doc: Value =
        serde_yaml::from_str(&text).with_context(|| format!("{}: not YAML", config.display()))?;
    let root = doc
        .as_mapping_mut()
        .context("the configuration is not a mapping")?;
    root.remove("admin");
    let mut addresses = Vec::new();
    if let Some(Value::Sequence(listeners)) = root.get_mut("listeners") {
        for l in listeners.iter_mut() {
            let Some(l) = l.as_mapping_mut() else {
                continue;
            };
            let addr = free_port()?;
            let name = l
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            l.insert("address".into(), addr.to_string().into());
            addresses.push((name, addr));
        }
        let addr = free_port()?;
        let mut route = Mapping::new();
        route.insert("name".into(), BASELINE.into());
        route.insert("cluster".into(), baseline_cluster.into());
        let mut baseline = Mapping::new();
        baseline.insert("name".into(), BASELINE.into());
        baseline.insert("address".into(), addr.to_string().into());
        baseline.insert(
            "routes".into(),
            Value::Sequence(vec![Value::Mapping(route)]),
        );
        listeners.push(Value::Mapping(baseline));
        addresses.push((BASELINE.to_owned(), addr));
    }
    if let Some(Value::Mapping(clusters)) = root.get_mut("clusters") {
        for (_, c) in clusters.iter_mut() {
            if let Some(c) = c.as_mapping_mut() {
                c.insert(
                    "endpoints".into(),
                    Value::Sequence(vec![upstream.to_string().into()]),
                );
            }
        }
    }
    Ok((serde_yaml::to_string(&doc)?, addresses))
}

impl Proxy {
    /// Starts `weft run` on the rewritten `config` with `workers` workers on `cpus`, and
    /// waits until every listener accepts connections.
    pub fn start(
        config: &Path,
        upstream: SocketAddr,
        baseline_cluster: &str,
        workers: usize,
        cpus: &CpuSet,
    ) -> anyhow::Result<Proxy> {
        let (text, listeners) = rewrite(config, upstream, baseline_cluster)?;
        // Next to the original, so that the paths in it mean the same.
        let dir = config.parent().unwrap_or(Path::new("."));
        let rewritten = dir.join(format!(".weft-bench-{}.yaml", std::process::id()));
        std::fs::write(&rewritten, text)
            .with_context(|| format!("writing {}", rewritten.display()))?;
        let exe = std::env::current_exe().context("finding the weft binary")?;
        let mut cmd = Command::new(exe);
        cmd.arg("run")
            .arg("--config")
            .arg(&rewritten)
            .arg("--workers")
            .arg(workers.to_string())
            .arg("--no-watch")
            .env("WEFT_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        cpus.pin_child(&mut cmd);
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                let _ = std::fs::remove_file(&rewritten);
                return Err(e).context("starting the proxy");
            }
        };
        let mut proxy = Proxy {
            child,
            config: rewritten,
            listeners,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        for (_, addr) in &proxy.listeners {
            while std::net::TcpStream::connect(addr).is_err() {
                if let Some(status) = proxy.child.try_wait()? {
                    bail!("the proxy exited ({status}) before listening on {addr}");
                }
                if Instant::now() > deadline {
                    bail!("the proxy did not listen on {addr} within 60 s");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(proxy)
    }

    /// The address of the listener called `name`.
    pub fn address(&self, name: &str) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| *a)
    }

    /// CPU time the proxy has used so far (user and system).
    pub fn cpu_time(&self) -> anyhow::Result<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))?;
        // Fields after the command name, which is in parentheses and may hold spaces.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let (utime, stime): (u64, u64) = (
            fields.get(11).context("no utime")?.parse()?,
            fields.get(12).context("no stime")?.parse()?,
        );
        // SAFETY: sysconf reads a constant of the system.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        Ok(Duration::from_nanos(
            (utime + stime) * 1_000_000_000 / ticks,
        ))
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // SAFETY: sending a signal to the child this process started.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.config);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rewritten_configuration_points_everything_at_loopback() {
        let dir = std::env::temp_dir().join(format!("weft-rewrite-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("c.yaml");
        std::fs::write(
            &config,
            "admin: { address: 0.0.0.0:9901 }\nlisteners:\n  - name: edge\n    address: 0.0.0.0:80\n    routes: [{ name: r, cluster: c }]\nclusters:\n  c: { endpoints: [10.0.0.1:80, 10.0.0.2:80] }\n",
        )
        .unwrap();
        let upstream: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let (text, listeners) = rewrite(&config, upstream, "c").unwrap();
        let doc: Value = serde_yaml::from_str(&text).unwrap();
        assert!(doc.get("admin").is_none());
        assert_eq!(listeners.len(), 2);
        assert!(listeners.iter().all(|(_, a)| a.ip().is_loopback()));
        assert_eq!(
            doc["clusters"]["c"]["endpoints"],
            Value::Sequence(vec!["127.0.0.1:9".into()])
        );
        assert_eq!(
            doc["listeners"][1]["routes"][0]["cluster"],
            Value::from("c")
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
