//! A misbehaving upstream process (`tests/peers/sick.py`, Python's standard library):
//! told over its own port to fail, slow down, reset, or fail its health checks, and
//! killed for real when a test needs an endpoint to die.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use super::client;

/// A running `sick.py`.
pub struct Sick {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Sick {
    /// Starts one that names itself `name` in its answers.
    pub fn start(name: &str) -> Sick {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/sick.py");
        let mut command = Command::new("python3");
        command.arg(script).arg(name);
        let (child, addr) = spawn_peer(command, "sick.py");
        Sick { child, addr }
    }

    /// Sets its mode (`mode/ok`, `mode/fail`, `mode/slow:400`, `mode/reset`) or its
    /// health (`health/pass`, `health/fail`).
    pub async fn set(&self, what: &str) {
        let r = client::get(self.addr, &format!("/_sick/{what}"), &[]).await;
        assert_eq!(r.status, 200);
    }

    /// Requests it served (health checks and control requests not counted).
    pub async fn count(&self) -> u64 {
        let r = client::get(self.addr, "/_sick/count", &[]).await;
        r.json()["count"].as_u64().unwrap()
    }

    /// Health checks it saw.
    pub async fn checks(&self) -> u64 {
        let r = client::get(self.addr, "/_sick/count", &[]).await;
        r.json()["checks"].as_u64().unwrap()
    }

    /// Kills the process: its port refuses connections from now on.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a peer process that listens on loopback and prints `port N` as its first
/// line, and keeps it running while its stdin stays open (the peers in `tests/peers`
/// stop when it closes): the process and its address.
pub fn spawn_peer(mut command: Command, what: &str) -> (Child, SocketAddr) {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what} does not start: {e}"));
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout is piped"))
        .read_line(&mut line)
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let port: u16 = line
        .trim()
        .strip_prefix("port ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{what} said {line:?}"));
    (child, SocketAddr::from(([127, 0, 0, 1], port)))
}

impl Drop for Sick {
    fn drop(&mut self) {
        self.kill();
    }
}
