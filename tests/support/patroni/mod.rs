//! A two-node Patroni cluster on etcd, on loopback, owned by one test (tests/patroni_*.rs).
//!
//! The real Debian packages run it (`patroni`, `etcd-server`; `.ci/setup` installs them): one
//! etcd, then a Patroni per node with `bin_dir` = this PostgreSQL's bindir. pg_webhook and its
//! settings live in the bootstrap DCS configuration, so every node runs with the same ones.
//! Every port is picked free and every file lives in the test's own directory, so tests run in
//! parallel. On drop, every process whose working directory is inside that directory is
//! killed — Patroni, etcd, postgres and its children (also those a test froze with SIGSTOP and
//! orphaned by killing their postmaster), and the sudo wrappers that started them.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use postgres::Client;

mod node;
pub mod scenario;
pub mod senders;

use node::http_get;
pub use node::Node;
use senders::{processes_under, Senders};

use super::cluster::{as_owner, extension_dir, free_port, pg_bindir, wait_until};

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// How long Patroni gets to bootstrap, fail over or rejoin a node.
pub const HA_WAIT: Duration = Duration::from_secs(120);

pub struct Ha {
    pub dir: PathBuf,
    pub scope: String,
    pub nodes: Vec<Node>,
    etcd: Child,
}

/// Bootstrap DCS settings every test cluster shares; `synchronous` turns on Patroni's
/// synchronous_mode.
fn bootstrap_dcs(synchronous: bool) -> serde_json::Value {
    serde_json::json!({
        "ttl": 20,
        "loop_wait": 1,
        "retry_timeout": 5,
        "maximum_lag_on_failover": 1048576,
        // A crashed leader is failed over at once instead of being restarted in place.
        "primary_start_timeout": 0,
        "synchronous_mode": synchronous,
        "postgresql": {
            "use_pg_rewind": true,
            "use_slots": true,
            "parameters": {
                "shared_preload_libraries": "pg_webhook",
                "pg_webhook.allowed_destinations": "127.0.0.1",
                "pg_webhook.poll_interval": "500ms",
                "wal_log_hints": "on",
                "fsync": "off",
                "log_min_messages": "info",
                "log_line_prefix": "%m [%p] %b ",
            }
        }
    })
}

impl Ha {
    /// etcd and two Patroni nodes; returns once one leads and the other streams from it (and,
    /// with `synchronous`, is its synchronous standby).
    pub fn start(synchronous: bool) -> Ha {
        assert!(
            extension_dir().join("pg_webhook.control").exists(),
            "pg_webhook is not installed: run `cargo pgrx install --pg-config $PG_CONFIG`"
        );
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let scope = format!("pgwh_{}_{n}", std::process::id());
        let dir =
            std::env::temp_dir().join(format!("pg_webhook_patroni_{}_{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        owner_ok("mkdir", &["-p", dir.join("etcd").to_str().unwrap()]);
        let etcd_port = free_port();
        let peer_port = free_port();
        let etcd = spawn_in(
            &dir.join("etcd"),
            "/usr/bin/etcd",
            &[
                "--name",
                "e",
                "--data-dir",
                dir.join("etcd/data").to_str().unwrap(),
                "--listen-client-urls",
                &format!("http://127.0.0.1:{etcd_port}"),
                "--advertise-client-urls",
                &format!("http://127.0.0.1:{etcd_port}"),
                "--listen-peer-urls",
                &format!("http://127.0.0.1:{peer_port}"),
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{peer_port}"),
                "--initial-cluster",
                &format!("e=http://127.0.0.1:{peer_port}"),
                "--logger",
                "zap",
                "--log-outputs",
                dir.join("etcd/etcd.log").to_str().unwrap(),
            ],
        );
        let mut ha = Ha {
            dir: dir.clone(),
            scope,
            nodes: Vec::new(),
            etcd,
        };
        wait_until(HA_WAIT, "etcd to answer", || {
            http_get(etcd_port, "/health").is_some_and(|(s, _)| s == 200)
        });
        for i in 1..=2 {
            let node = ha.start_node(&format!("node{i}"), etcd_port, synchronous);
            ha.nodes.push(node);
            // The first bootstraps alone, so it is the leader and the second its replica.
            if i == 1 {
                ha.wait_leader(None);
            }
        }
        ha.wait_replica_streaming(0, 1, synchronous);
        ha
    }

    fn start_node(&self, name: &str, etcd_port: u16, synchronous: bool) -> Node {
        let dir = self.dir.join(name);
        owner_ok("mkdir", &["-p", dir.join("pglog").to_str().unwrap()]);
        let (pg_port, api_port) = (free_port(), free_port());
        let config = serde_json::json!({
            "scope": self.scope,
            "namespace": "/pg_webhook_tests/",
            "name": name,
            "log": {"dir": dir, "level": "INFO"},
            "restapi": {
                "listen": format!("127.0.0.1:{api_port}"),
                "connect_address": format!("127.0.0.1:{api_port}"),
            },
            "etcd3": {"hosts": [format!("127.0.0.1:{etcd_port}")]},
            "bootstrap": {
                "dcs": bootstrap_dcs(synchronous),
                "initdb": [{"encoding": "UTF8"}, "no-sync"],
            },
            "postgresql": {
                "listen": format!("127.0.0.1:{pg_port}"),
                "connect_address": format!("127.0.0.1:{pg_port}"),
                "data_dir": dir.join("data"),
                "bin_dir": pg_bindir(),
                "pgpass": dir.join("pgpass"),
                "authentication": {
                    "superuser": {"username": "postgres"},
                    "replication": {"username": "postgres"},
                    "rewind": {"username": "postgres"},
                },
                "pg_hba": [
                    "local all all trust",
                    "host all all 127.0.0.1/32 trust",
                    "host replication all 127.0.0.1/32 trust",
                ],
                // Only what differs per node; pg_webhook's settings are in the DCS.
                "parameters": {
                    "unix_socket_directories": dir,
                    "logging_collector": "on",
                    "log_directory": dir.join("pglog"),
                    "log_filename": "postgresql-%H%M%S.log",
                },
            },
            "watchdog": {"mode": "off"},
        });
        // JSON is YAML.
        let path = dir.join("patroni.yml");
        std::fs::write(&path, serde_json::to_string_pretty(&config).unwrap())
            .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        let child = spawn_in(&dir, "/usr/bin/patroni", &[path.to_str().unwrap()]);
        Node {
            name: name.to_string(),
            dir,
            pg_port,
            api_port,
            config: path,
            child,
        }
    }

    /// Waits until a node other than `except` is the leader and accepts writes; its index.
    pub fn wait_leader(&self, except: Option<usize>) -> usize {
        let mut leader = None;
        let what = format!("a leader other than {except:?} in {}", self.scope);
        wait_until(HA_WAIT, &what, || {
            leader = self.nodes.iter().enumerate().position(|(i, n)| {
                Some(i) != except
                    && n.api_status("/primary") == Some(200)
                    && n.try_connect().is_ok_and(|mut c| {
                        c.query_one("SELECT NOT pg_is_in_recovery()", &[])
                            .is_ok_and(|r| r.get::<_, bool>(0))
                    })
            });
            leader.is_some()
        });
        leader.unwrap_or_default()
    }

    /// Waits until `replica` is a replica in recovery streaming from `leader` (with
    /// `synchronous`: as its synchronous standby).
    pub fn wait_replica_streaming(&self, leader: usize, replica: usize, synchronous: bool) {
        let name = self.nodes[replica].name.clone();
        wait_until(
            HA_WAIT,
            &format!("{name} streaming from the leader"),
            || {
                let in_recovery = self.nodes[replica].try_connect().is_ok_and(|mut c| {
                    c.query_one("SELECT pg_is_in_recovery()", &[])
                        .is_ok_and(|r| r.get::<_, bool>(0))
                });
                // Patroni fails over only to a standby it recorded as synchronous in the DCS.
                in_recovery
                    && (!synchronous || self.nodes[replica].api_status("/sync") == Some(200))
                    && self.nodes[leader].try_connect().is_ok_and(|mut c| {
                        c.query_one(
                            "SELECT count(*) FROM pg_stat_replication
                          WHERE application_name = $1 AND state = 'streaming'
                            AND (NOT $2 OR sync_state = 'sync')",
                            &[&name, &synchronous],
                        )
                        .is_ok_and(|r| r.get::<_, i64>(0) == 1)
                    })
            },
        );
    }

    /// Waits until `replica` has replayed everything `leader` has written so far.
    pub fn wait_replayed(&self, leader: &mut Client, replica: usize) {
        let lsn: String = leader
            .query_one("SELECT pg_current_wal_lsn()::text", &[])
            .unwrap_or_else(|e| panic!("the leader's LSN: {e}"))
            .get(0);
        let mut on_replica = self.nodes[replica].connect();
        wait_until(
            HA_WAIT,
            &format!("the replica to replay up to {lsn}"),
            || {
                on_replica
                    .query_one(
                        "SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn",
                        &[&lsn],
                    )
                    .unwrap_or_else(|e| panic!("the replica's replay LSN: {e}"))
                    .get(0)
            },
        );
    }

    /// `patronictl -c <node's config> args…`; its output, or a panic with it.
    pub fn patronictl(&self, node: usize, args: &[&str]) -> String {
        let mut all = vec!["-c", self.nodes[node].config.to_str().unwrap()];
        all.extend_from_slice(args);
        let out = as_owner("/usr/bin/patronictl", &all)
            .output()
            .unwrap_or_else(|e| panic!("running patronictl: {e}"));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "patronictl {args:?} failed: {text}");
        text
    }

    /// What identifies the nodes' processes, for a receiver to tell who sent a request.
    pub fn senders(&self) -> Senders {
        Senders::new(
            self.dir.clone(),
            self.nodes.iter().map(Node::data).collect(),
        )
    }
}

/// Sends `signal` to `pid` (a process of this test's cluster).
pub fn signal(pid: i32, signal: i32) {
    // SAFETY: kill has no memory preconditions; the pid is one of our cluster's processes.
    let rc = unsafe { libc::kill(pid, signal) };
    assert_eq!(
        rc,
        0,
        "kill({pid}, {signal}): {}",
        std::io::Error::last_os_error()
    );
}

/// The pids of every pg_webhook process (launcher, delivery workers, callback runner) of the
/// node `db` is connected to.
pub fn webhook_pids(db: &mut Client) -> Vec<i32> {
    db.query(
        "SELECT pid FROM pg_stat_activity WHERE backend_type LIKE 'pg_webhook%' ORDER BY pid",
        &[],
    )
    .unwrap_or_else(|e| panic!("listing pg_webhook's processes: {e}"))
    .iter()
    .map(|r| r.get(0))
    .collect()
}

impl Drop for Ha {
    fn drop(&mut self) {
        // Everything but the sudo wrappers we started (as root), at once (Patroni would restart
        // what dies before it), a few times over for what was being spawned meanwhile; each
        // wrapper then exits with its daemon and reaps it.
        let wrappers: Vec<i32> = self
            .nodes
            .iter()
            .map(|n| &n.child)
            .chain(std::iter::once(&self.etcd))
            .map(|c| c.id() as i32)
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|comm| comm.trim() == "sudo")
            })
            .collect();
        for _ in 0..20 {
            let pids: Vec<i32> = processes_under(&self.dir)
                .into_iter()
                .map(|(pid, _)| pid)
                .filter(|pid| !wrappers.contains(pid))
                .collect();
            if pids.is_empty() {
                break;
            }
            for pid in pids {
                // SAFETY: kill on a process running inside this test's own directory.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        for child in self
            .nodes
            .iter_mut()
            .map(|n| &mut n.child)
            .chain(std::iter::once(&mut self.etcd))
        {
            let deadline = Instant::now() + Duration::from_secs(5);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            if let Err(e) = child.wait() {
                eprintln!("waiting for a child: {e}");
            }
        }
        if std::thread::panicking() {
            for node in &self.nodes {
                let tail = |text: String, n: usize| {
                    let lines: Vec<&str> = text.lines().rev().take(n).collect();
                    lines.into_iter().rev().collect::<Vec<_>>().join("\n")
                };
                eprintln!(
                    "--- kept {}; {} Patroni log tail:\n{}\n--- its postgres log tail:\n{}",
                    self.dir.display(),
                    node.name,
                    tail(node.patroni_log(), 40),
                    tail(node.postgres_log(), 40)
                );
            }
        } else if std::env::var_os("PG_WEBHOOK_KEEP_CLUSTERS").is_none() {
            let _ = as_owner("rm", &["-rf", self.dir.to_str().unwrap()]).status();
        }
    }
}

/// Runs `program` as the clusters' owner; panics with its output on failure.
fn owner_ok(program: &str, args: &[&str]) {
    let out = as_owner(program, args)
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts a daemon as the clusters' owner with `dir` as its working directory (which is how
/// Drop finds it and everything it starts).
fn spawn_in(dir: &Path, program: &str, args: &[&str]) -> Child {
    let log = std::fs::File::create(dir.join("stderr.log"))
        .unwrap_or_else(|e| panic!("creating {}/stderr.log: {e}", dir.display()));
    let err = log.try_clone().expect("a second handle on stderr.log");
    as_owner(program, args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {program} (apt-get install patroni etcd-server): {e}"))
}
