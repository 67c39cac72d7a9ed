//! A throwaway PostgreSQL cluster with pg_webhook preloaded, owned by one test.
//!
//! Tests that crash, stop or reconfigure the server need a cluster of their own, so this does
//! what `initdb` + `pg_ctl` would by hand. As root it runs them as `postgres` (PostgreSQL
//! refuses to run as root). The extension must already be installed (`cargo pgrx install`,
//! which `cargo pgrx test` does first).
//!
//! Starting, stopping and signalling the running server, its pg_webhook processes' pids and a
//! standby are in cluster_processes.rs; `pg_upgrade` into a new cluster in cluster_upgrade.rs.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use postgres::{Client, NoTls};

static NEXT: AtomicUsize = AtomicUsize::new(0);

#[path = "cluster_processes.rs"]
mod processes;
#[path = "cluster_upgrade.rs"]
mod upgrade;

pub struct Cluster {
    pub dir: PathBuf,
    pub port: u16,
    bindir: PathBuf,
    runas: Option<String>,
}

pub fn pg_bindir() -> PathBuf {
    let pg_config = std::env::var("PG_CONFIG").unwrap_or_else(|_| "pg_config".into());
    let out = Command::new(&pg_config)
        .arg("--bindir")
        .output()
        .unwrap_or_else(|e| panic!("running {pg_config} --bindir: {e}"));
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// A port on 127.0.0.1 that nothing holds, for a server a test starts later. Taken below the
/// kernel's ephemeral range: a port the kernel handed out (to `bind(0)` or as a connection's
/// source port) can be handed out again to another test running beside this one before the
/// server that was meant to have it binds it, and that test's traffic then reaches the wrong
/// server (a CI run once saw a stray request at a Patroni test's receiver and the other
/// test's Patroni never elect a leader). Below the range only tests pick ports, and each
/// process walks its own sequence of them (from a start that depends on its pid), checking
/// each is free.
pub fn free_port() -> u16 {
    static NEXT_PORT: AtomicUsize = AtomicUsize::new(0);
    const LOWEST: usize = 10_000;
    let top = ephemeral_range_start().max(LOWEST + 1_000);
    let span = top - LOWEST;
    let start = (std::process::id() as usize).wrapping_mul(7_919) % span;
    for _ in 0..span {
        let n = NEXT_PORT.fetch_add(1, Ordering::Relaxed);
        let port = (LOWEST + (start + n) % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port on 127.0.0.1 between {LOWEST} and {top}")
}

/// The first port of the kernel's ephemeral range (32768 unless configured otherwise).
fn ephemeral_range_start() -> usize {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// `program args` as the clusters' owner: `postgres` (through sudo) when we are root, else us.
pub fn as_owner(program: &str, args: &[&str]) -> Command {
    runas_command(is_root().then_some("postgres"), program, args)
}

fn runas_command(runas: Option<&str>, program: &str, args: &[&str]) -> Command {
    let mut c = match runas {
        Some(user) => {
            let mut c = Command::new("sudo");
            c.args(["-n", "-u", user, program]);
            c
        }
        None => Command::new(program),
    };
    c.args(args);
    c
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// PostgreSQL's extension directory (`pg_config --sharedir`/extension).
pub fn extension_dir() -> PathBuf {
    let out = Command::new(pg_bindir().join("pg_config"))
        .arg("--sharedir")
        .output()
        .expect("running pg_config --sharedir");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("extension")
}

/// Where PostgreSQL keeps its extensions' libraries (`pg_config --pkglibdir`).
pub fn pkglib_dir() -> PathBuf {
    let out = Command::new(pg_bindir().join("pg_config"))
        .arg("--pkglibdir")
        .output()
        .expect("running pg_config --pkglibdir");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

impl Cluster {
    /// initdb + start, with `extra` lines appended to postgresql.conf.
    pub fn start(extra: &[&str]) -> Cluster {
        assert!(
            extension_dir().join("pg_webhook.control").exists(),
            "pg_webhook is not installed: run `cargo pgrx install` (or the suite through `bash .ci/run`)"
        );
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("pg_webhook_test_{}_{n}", std::process::id()));
        let mut cluster = Cluster {
            dir,
            port: free_port(),
            bindir: pg_bindir(),
            runas: is_root().then(|| "postgres".to_string()),
        };
        cluster.initdb();
        let mut conf = format!(
            "\nport = {}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             shared_preload_libraries = 'pg_webhook'\nfsync = off\n\
             pg_webhook.allowed_destinations = '127.0.0.1'\n\
             log_min_messages = info\nlog_line_prefix = '%m [%p] %b '\n",
            cluster.port,
            cluster.dir.display()
        );
        // One delivery worker unless a test asks for others: the tests that kill, restart or
        // watch "the worker" mean the only one, on any machine (the default, 0, follows the
        // CPUs). Postgres takes a setting's last line, so a test's own wins.
        conf.push_str("pg_webhook.workers = 1\n");
        for line in extra {
            conf.push_str(line);
            conf.push('\n');
        }
        cluster.append_conf(&conf);
        cluster.first_start();
        cluster
    }

    /// Starts the new cluster. A port free when it was picked can be taken before the server
    /// binds it (tests run in parallel, and their receivers bind ports too): then the server
    /// is started again on another one.
    fn first_start(&mut self) {
        const TRIES: usize = 5;
        for _ in 1..TRIES {
            let out = self.run_pg_ctl_start();
            if out.status.success() {
                return;
            }
            if !self.log().contains("Address already in use") {
                break;
            }
            self.port = free_port();
            self.append_conf(&format!("\nport = {}\n", self.port));
        }
        self.pg_ctl_start();
    }

    /// A fresh directory with a new, empty data directory in it (`initdb`).
    fn initdb(&self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        self.run_ok("mkdir", &[self.dir.to_str().unwrap()]);
        let data = self.data();
        self.run_ok(
            self.bindir.join("initdb").to_str().unwrap(),
            &[
                "-D",
                data.to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
    }

    /// The path of one of this PostgreSQL's programs (pg_dump, pg_repack, ...).
    pub fn bin(&self, program: &str) -> String {
        self.bindir.join(program).display().to_string()
    }

    pub fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    /// Everything the server logged so far.
    pub fn log(&self) -> String {
        let out = self.run("cat", &[self.log_path().to_str().unwrap()]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn command(&self, program: &str, args: &[&str]) -> Command {
        runas_command(self.runas.as_deref(), program, args)
    }

    /// Starts a long-running program (pgbouncer, ...) as the cluster's owner; stop it with
    /// SIGTERM to the returned child (sudo passes it on).
    pub fn spawn(&self, program: &str, args: &[&str]) -> std::process::Child {
        self.command(program, args)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {program}: {e}"))
    }

    fn run(&self, program: &str, args: &[&str]) -> Output {
        self.command(program, args)
            .output()
            .unwrap_or_else(|e| panic!("running {program}: {e}"))
    }

    pub(super) fn run_ok(&self, program: &str, args: &[&str]) -> Output {
        let out = self.run(program, args);
        assert!(
            out.status.success(),
            "{program} {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Runs a client program of this PostgreSQL (pg_dump, pg_restore, ...) against the
    /// cluster, as its owner, and returns its standard output; panics with its stderr on failure.
    pub fn tool(&self, program: &str, args: &[&str]) -> String {
        let port = self.port.to_string();
        let mut all = vec!["-h", "127.0.0.1", "-p", &port, "-U", "postgres"];
        all.extend_from_slice(args);
        let out = self.run_ok(self.bindir.join(program).to_str().unwrap(), &all);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// As `tool`, as `user`, for a run that may fail: its standard output, or its stderr.
    pub fn tool_as(&self, user: &str, program: &str, args: &[&str]) -> Result<String, String> {
        let port = self.port.to_string();
        let mut all = vec!["-h", "127.0.0.1", "-p", &port, "-U", user];
        all.extend_from_slice(args);
        let out = self.run(self.bindir.join(program).to_str().unwrap(), &all);
        match out.status.success() {
            true => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
            false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
        }
    }

    /// Appends to postgresql.conf (takes effect on reload or restart).
    pub fn append_conf(&self, text: &str) {
        let path = self.data().join("postgresql.conf");
        let mut child = self
            .command("tee", &["-a", path.to_str().unwrap()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("tee");
        {
            use std::io::Write;
            let stdin = child.stdin.as_mut().expect("tee stdin");
            stdin
                .write_all(text.as_bytes())
                .expect("writing postgresql.conf");
        }
        assert!(child.wait().expect("tee").success());
    }

    pub fn connect(&self, database: &str) -> Client {
        self.connect_as(database, "postgres")
    }

    /// A connection as `user` (trust authentication).
    pub fn connect_as(&self, database: &str, user: &str) -> Client {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match Client::connect(
                &format!(
                    "host=127.0.0.1 port={} user={user} dbname={database}",
                    self.port
                ),
                NoTls,
            ) {
                Ok(c) => return c,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("connecting to the test cluster: {e}\n{}", self.log()),
            }
        }
    }

    /// A client on database `postgres` with the extension created.
    pub fn client_with_extension(&self) -> Client {
        let mut c = self.connect("postgres");
        c.batch_execute("CREATE EXTENSION IF NOT EXISTS pg_webhook")
            .expect("CREATE EXTENSION pg_webhook");
        c
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let pg_ctl = self.bindir.join("pg_ctl");
        let _ = self.run(
            pg_ctl.to_str().unwrap(),
            &[
                "-D",
                self.data().to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
        // A failed test keeps its cluster and shows the end of its log, so a failure that
        // happens only under CI's load can still be read.
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!(
                "--- kept {} ; last lines of its server log:\n{}",
                self.dir.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        } else if std::env::var_os("PG_WEBHOOK_KEEP_CLUSTERS").is_none() {
            let _ = self.run("rm", &["-rf", self.dir.to_str().unwrap()]);
        }
    }
}

/// Polls `cond` every 20 ms until it holds; panics naming `what` after `timeout`.
pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[allow(dead_code)]
pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Puts the frozen install script of an earlier release next to the current one, so that
/// `CREATE EXTENSION ... VERSION` can install it (`cargo pgrx install` copies only the
/// current script and the upgrade scripts).
pub fn install_released_script(version: &str) {
    let name = format!("pg_webhook--{version}.sql");
    let from = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("sql/released")
        .join(&name);
    let to = extension_dir().join(&name);
    if std::fs::read(&to).ok() == std::fs::read(&from).ok() {
        return;
    }
    if std::fs::copy(&from, &to).is_err() {
        let ok = std::process::Command::new("sudo")
            .args(["-n", "cp"])
            .arg(&from)
            .arg(&to)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "could not install {name} into {}", to.display());
    }
}
