//! One Patroni node of a test cluster: its directories, ports, logs, connections and REST API.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

use postgres::{Client, NoTls};

use super::HA_WAIT;

pub struct Node {
    pub name: String,
    pub dir: PathBuf,
    pub pg_port: u16,
    pub api_port: u16,
    pub config: PathBuf,
    pub(super) child: Child,
}

impl Node {
    pub fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// What Patroni logged on this node.
    pub fn patroni_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("patroni.log")).unwrap_or_default()
    }

    /// What this node's postgres logged (all its log files, oldest first).
    pub fn postgres_log(&self) -> String {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir.join("pglog"))
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        files.sort();
        files
            .iter()
            .map(|f| std::fs::read_to_string(f).unwrap_or_default())
            .collect()
    }

    pub fn try_connect(&self) -> Result<Client, postgres::Error> {
        Client::connect(
            &format!(
                "host=127.0.0.1 port={} user=postgres dbname=postgres connect_timeout=5",
                self.pg_port
            ),
            NoTls,
        )
    }

    pub fn connect(&self) -> Client {
        let deadline = Instant::now() + HA_WAIT;
        loop {
            match self.try_connect() {
                Ok(c) => return c,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("connecting to {}: {e}", self.name),
            }
        }
    }

    /// The status of GET `path` on this node's Patroni REST API (None: no answer).
    pub fn api_status(&self, path: &str) -> Option<u16> {
        http_get(self.api_port, path).map(|(status, _)| status)
    }

    /// The postmaster's pid, from postmaster.pid.
    pub fn postmaster_pid(&self) -> i32 {
        let path = self.data().join("postmaster.pid");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        text.lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or_else(|| panic!("no pid in {}: {text:?}", path.display()))
    }
}

/// GET `path` from 127.0.0.1:`port` (HTTP/1.0): the status and body, or None without an answer.
pub(super) fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    Some((status, body))
}
