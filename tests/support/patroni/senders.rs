//! Which node sent a request: a receiver for tests/patroni.rs that finds, for each request, the
//! process at the other end of its connection (through /proc: the socket's inode, then the
//! process holding it, then that process's working directory, which for postgres is its data
//! directory), and the processes working inside a test's directory.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::super::cluster::free_port;
use super::super::receiver::{Receiver, Reply, Watch};
use super::Ha;

/// The test's directory and each node's data directory (the working directory of its postgres
/// processes).
#[derive(Clone)]
pub struct Senders {
    dir: PathBuf,
    data_dirs: Vec<PathBuf>,
}

impl Senders {
    pub fn new(dir: PathBuf, data_dirs: Vec<PathBuf>) -> Senders {
        Senders { dir, data_dirs }
    }

    /// The index of the node whose postgres process sent the request that arrived from `peer`
    /// at the receiver on `receiver_port` (None: no process of this cluster holds that socket).
    /// Call it while the request waits for its answer: the sender's socket is still open.
    pub fn sender(&self, peer: SocketAddr, receiver_port: u16) -> Option<usize> {
        let inode = socket_inode(peer.port(), receiver_port)?;
        let target = format!("socket:[{inode}]");
        for (pid, cwd) in processes_under(&self.dir) {
            let Some(node) = self.data_dirs.iter().position(|d| &cwd == d) else {
                continue;
            };
            let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
                continue;
            };
            if fds
                .filter_map(|fd| fd.ok().and_then(|fd| std::fs::read_link(fd.path()).ok()))
                .any(|link| link.to_str() == Some(target.as_str()))
            {
                return Some(node);
            }
        }
        None
    }
}

/// One accepted delivery: its webhook-id, its row, which node sent it, when it arrived.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub webhook_id: String,
    pub row: i64,
    pub node: Option<usize>,
    pub at: Instant,
}

/// A receiver that answers 204 (after `delay`) and records, for each request, which node of
/// `ha` sent it. Start it after the cluster, before anything is sent.
pub fn receiver(ha: &Ha, delay: Duration) -> (Receiver, Arc<Mutex<Vec<Delivery>>>) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let port = free_port();
    let (senders, seen) = (ha.senders(), log.clone());
    // Looked up as each connection is accepted, while its sender is certainly connected (a
    // worker stopped with requests in flight may be gone by the time its request is read),
    // and kept per connection, not per sender port: a sender killed with SIGKILL resets its
    // connections instead of leaving their ports in TIME_WAIT, and another node's worker may
    // then get the same port.
    let by_connection: Arc<Mutex<HashMap<u64, usize>>> = Arc::new(Mutex::new(HashMap::new()));
    let noted = by_connection.clone();
    let watch: Watch = Arc::new(move |connection, peer| {
        if let Some(node) = senders.sender(peer, port) {
            noted.lock().unwrap().insert(connection, node);
        }
    });
    let rx = Receiver::on_port_watching(port, Some(watch), move |req, _| {
        let node = by_connection.lock().unwrap().get(&req.connection).copied();
        let row = serde_json::from_slice::<serde_json::Value>(&req.body)
            .ok()
            .and_then(|b| b["record"]["id"].as_i64())
            .unwrap_or(i64::MIN);
        seen.lock().unwrap().push(Delivery {
            webhook_id: req.id(),
            row,
            node,
            at: req.at,
        });
        if delay.is_zero() {
            Reply::Status(204)
        } else {
            Reply::Delay(delay, 204)
        }
    });
    (rx, log)
}

/// row -> its deliveries, in arrival order.
pub fn by_row(log: &Mutex<Vec<Delivery>>) -> HashMap<i64, Vec<Delivery>> {
    let mut map: HashMap<i64, Vec<Delivery>> = HashMap::new();
    for d in log.lock().unwrap().iter() {
        map.entry(d.row).or_default().push(d.clone());
    }
    map
}

/// Every live process (but this one) whose working directory is `dir` or inside it, with that
/// directory. Postgres' processes work in their data directory, the daemons where spawn_in
/// put them.
pub fn processes_under(dir: &Path) -> Vec<(i32, PathBuf)> {
    let me = std::process::id() as i32;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| *pid != me)
        .filter_map(|pid| {
            let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).ok()?;
            cwd.starts_with(dir).then_some((pid, cwd))
        })
        .collect()
}

/// The inode of the loopback TCP socket with local port `local` connected to port `remote`.
fn socket_inode(local: u16, remote: u16) -> Option<u64> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let want_local = format!("0100007F:{local:04X}");
    let want_remote = format!("0100007F:{remote:04X}");
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.get(1) == Some(&want_local.as_str())
            && fields.get(2) == Some(&want_remote.as_str()))
        .then(|| fields.get(9)?.parse().ok())
        .flatten()
    })
}
