//! Which node sent a request: a receiver for tests/patroni_*.rs that finds, for each request, the
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

    /// Who holds the other end of the connection that arrived from `peer` at the receiver on
    /// `receiver_port`. Call it as the connection is accepted: the sender is normally still
    /// connected then.
    pub fn sender(&self, peer: SocketAddr, receiver_port: u16) -> Sender {
        let look = || match socket_inode(peer.port(), receiver_port) {
            // The sender's end is closed and owned by no process any more: it exited (or
            // closed) after connecting and writing, before the connection was even accepted.
            None | Some(0) => Sender::Gone,
            Some(inode) => self.holder(inode).map_or(Sender::Unknown, Sender::Node),
        };
        match look() {
            // Its holder may be exiting (its working directory already unreadable): a live
            // sender keeps its end open for the answer it has not had yet, an exiting one does
            // not.
            Sender::Unknown => {
                std::thread::sleep(Duration::from_millis(50));
                look()
            }
            found => found,
        }
    }

    /// The node whose postgres process holds socket `inode`.
    fn holder(&self, inode: u64) -> Option<usize> {
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

/// Who sent a request, as found when its connection was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    /// A postgres process of this node.
    Node(usize),
    /// A process that had already closed its end: one of a stopping node's workers that
    /// connected and wrote its request just before it exited.
    Gone,
    /// A live process that is not one of the cluster's.
    Unknown,
}

/// One accepted delivery: its webhook-id, its row, which node sent it (None: not one of the
/// cluster's live processes, see `sender`), when it arrived.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub webhook_id: String,
    pub row: i64,
    pub node: Option<usize>,
    pub sender: Sender,
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
    let by_connection: Arc<Mutex<HashMap<u64, Sender>>> = Arc::new(Mutex::new(HashMap::new()));
    let noted = by_connection.clone();
    let watch: Watch = Arc::new(move |connection, peer| {
        let sender = senders.sender(peer, port);
        noted.lock().unwrap().insert(connection, sender);
    });
    let rx = Receiver::on_port_watching(port, Some(watch), move |req, _| {
        let sender = by_connection
            .lock()
            .unwrap()
            .get(&req.connection)
            .copied()
            .unwrap_or(Sender::Unknown);
        let node = match sender {
            Sender::Node(n) => Some(n),
            _ => None,
        };
        let row = serde_json::from_slice::<serde_json::Value>(&req.body)
            .ok()
            .and_then(|b| b["record"]["id"].as_i64())
            .unwrap_or(i64::MIN);
        seen.lock().unwrap().push(Delivery {
            webhook_id: req.id(),
            row,
            node,
            sender,
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
