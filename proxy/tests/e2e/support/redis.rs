//! A real Redis (Debian's `redis-server`) on a free loopback port, with nothing kept on
//! disk; or three of them formed into a Redis Cluster with `redis-cli`. Killed (by
//! pid) when dropped.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::proxy::{free_addr, TempDir};

/// One `redis-server`.
pub struct RedisServer {
    child: Option<Child>,
    /// Where it listens.
    pub addr: SocketAddr,
    extra: Vec<String>,
    /// TLS only (`--tls-port`): the CA, certificate and key files.
    tls: Option<[String; 3]>,
    dir: TempDir,
}

impl RedisServer {
    /// Starts one with `extra` arguments (`--requirepass x`, `--cluster-enabled yes`).
    pub fn start(extra: &[&str]) -> RedisServer {
        Self::start_tls(extra, None)
    }

    /// Starts one that speaks TLS only, with `tls` = [CA, certificate, key] files and
    /// client certificates required.
    pub fn start_tls(extra: &[&str], tls: Option<[String; 3]>) -> RedisServer {
        let mut server = RedisServer {
            child: None,
            addr: free_addr(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            tls,
            dir: TempDir::new("redis"),
        };
        server.restart();
        server
    }

    /// Starts it again on the same port (after [`RedisServer::kill`]), empty.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let port = self.addr.port().to_string();
        let listen: Vec<&str> = match &self.tls {
            None => vec!["--port", &port],
            Some([ca, cert, key]) => vec![
                "--port",
                "0",
                "--tls-port",
                &port,
                "--tls-ca-cert-file",
                ca,
                "--tls-cert-file",
                cert,
                "--tls-key-file",
                key,
                "--tls-auth-clients",
                "yes",
            ],
        };
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1"])
            .args(&listen)
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                &self.dir.0.display().to_string(),
            ])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (Debian's redis-server; `make test` installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        let answers = |out: String| out.contains("PONG") || out.contains("NOAUTH");
        while !answers(self.cli(&["PING"])) {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("redis-server exited: {status}");
            }
            assert!(Instant::now() < deadline, "redis-server did not answer");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills it (by pid) and waits until it is gone.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `redis-cli` against it; its output (stdout and stderr).
    pub fn cli(&self, args: &[&str]) -> String {
        let mut server_args = self.extra.clone();
        if let Some([ca, cert, key]) = &self.tls {
            server_args
                .extend(["--tls", "--cacert", ca, "--cert", cert, "--key", key].map(String::from));
        }
        redis_cli(self.addr, &server_args, args)
    }
}

/// `redis-cli -h -p` (with `-a` when the server has `--requirepass`, and the TLS
/// options among `server_args` that start with `--tls`).
pub fn redis_cli(addr: SocketAddr, server_args: &[String], args: &[&str]) -> String {
    let mut cmd = Command::new("redis-cli");
    cmd.args(["-h", &addr.ip().to_string(), "-p", &addr.port().to_string()]);
    if let Some(i) = server_args.iter().position(|a| a == "--requirepass") {
        cmd.args(["--no-auth-warning", "-a", &server_args[i + 1]]);
    }
    if let Some(i) = server_args.iter().position(|a| a == "--tls") {
        cmd.args(&server_args[i..]);
    }
    match cmd.args(args).output() {
        Ok(out) => format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!("redis-cli (Debian's redis-tools): {e}"),
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Three masters formed into a Redis Cluster (no replicas).
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts the nodes, forms the cluster and waits until it reports `ok`.
    pub fn start() -> RedisCluster {
        let nodes: Vec<RedisServer> = (0..3)
            .map(|_| {
                RedisServer::start(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "2000",
                ])
            })
            .collect();
        let mut args = vec!["--cluster".to_owned(), "create".to_owned()];
        args.extend(nodes.iter().map(|n| n.addr.to_string()));
        args.extend(["--cluster-replicas", "0", "--cluster-yes"].map(String::from));
        let out = Command::new("redis-cli").args(&args).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("All 16384 slots covered"),
            "cluster create: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while !nodes
            .iter()
            .all(|n| n.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok"))
        {
            assert!(Instant::now() < deadline, "the cluster did not become ok");
            std::thread::sleep(Duration::from_millis(100));
        }
        RedisCluster { nodes }
    }
}
