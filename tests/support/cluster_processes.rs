//! The running server of a test cluster: `pg_ctl` start, stop and reload, signals to its
//! processes, the pids of pg_webhook's workers and callback runner, and a streaming standby and
//! its promotion.

use std::process::Output;
use std::sync::atomic::Ordering;
use std::time::Duration;

use postgres::Client;

use super::{free_port, wait_until, Cluster, NEXT};

impl Cluster {
    pub fn pg_ctl_start(&self) {
        let out = self.run_pg_ctl_start();
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
    }

    /// Stops the cluster (fast) and starts it again with `env` (`NAME=value`) in the server's
    /// environment.
    pub fn restart_with_env(&self, env: &[&str]) {
        self.stop("fast");
        let pg_ctl = self.bindir.join("pg_ctl");
        let (data, log) = (self.data(), self.log_path());
        let mut args: Vec<&str> = env.to_vec();
        args.extend([
            pg_ctl.to_str().unwrap(),
            "-D",
            data.to_str().unwrap(),
            "-l",
            log.to_str().unwrap(),
            "-w",
            "start",
        ]);
        self.run_ok("env", &args);
    }

    pub(super) fn run_pg_ctl_start(&self) -> Output {
        let pg_ctl = self.bindir.join("pg_ctl");
        self.run(
            pg_ctl.to_str().unwrap(),
            &[
                "-D",
                self.data().to_str().unwrap(),
                "-l",
                self.log_path().to_str().unwrap(),
                "-w",
                "-t",
                "60",
                "start",
            ],
        )
    }

    /// `pg_ctl stop -m <mode>`: smart, fast or immediate.
    pub fn stop(&self, mode: &str) {
        let pg_ctl = self.bindir.join("pg_ctl");
        self.run_ok(
            pg_ctl.to_str().unwrap(),
            &[
                "-D",
                self.data().to_str().unwrap(),
                "-m",
                mode,
                "-w",
                "stop",
            ],
        );
    }

    pub fn reload(&self) {
        let pg_ctl = self.bindir.join("pg_ctl");
        self.run_ok(
            pg_ctl.to_str().unwrap(),
            &["-D", self.data().to_str().unwrap(), "reload"],
        );
    }

    /// Sends a signal to a server process (as its owner).
    pub fn kill(&self, signal: &str, pid: i32) {
        self.run_ok("kill", &[&format!("-{signal}"), &pid.to_string()]);
    }

    /// The delivery worker's pid, waiting for it to be up.
    pub fn worker_pid(&self, client: &mut Client) -> i32 {
        let mut pid = None;
        wait_until(
            Duration::from_secs(30),
            "the pg_webhook worker to run",
            || {
                pid = client
                    .query_opt(
                        "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_webhook'
                      ORDER BY pid LIMIT 1",
                        &[],
                    )
                    .ok()
                    .flatten()
                    .map(|r| r.get::<_, i32>(0));
                pid.is_some()
            },
        );
        pid.unwrap_or_default()
    }

    /// A streaming standby of this cluster (pg_basebackup), started, with `name` as its
    /// application_name (for synchronous_standby_names).
    pub fn make_standby(&self, name: &str) -> Cluster {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let standby = Cluster {
            dir: std::env::temp_dir().join(format!("pg_webhook_test_{}_{n}", std::process::id())),
            port: free_port(),
            bindir: self.bindir.clone(),
            runas: self.runas.clone(),
        };
        let _ = std::fs::remove_dir_all(&standby.dir);
        standby.run_ok("mkdir", &[standby.dir.to_str().unwrap()]);
        let data = standby.data();
        standby.run_ok(
            self.bindir.join("pg_basebackup").to_str().unwrap(),
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-D",
                data.to_str().unwrap(),
                "-R",
                "-X",
                "stream",
                "--no-sync",
            ],
        );
        standby.append_conf(&format!(
            "\nport = {}\nunix_socket_directories = '{}'\n\
             primary_conninfo = 'host=127.0.0.1 port={} user=postgres application_name={name}'\n",
            standby.port,
            standby.dir.display(),
            self.port
        ));
        // postgresql.auto.conf (written by -R) would override primary_conninfo; drop its line.
        let auto = data.join("postgresql.auto.conf");
        standby.run_ok(
            "sed",
            &["-i", "/primary_conninfo/d", auto.to_str().unwrap()],
        );
        standby.pg_ctl_start();
        standby
    }

    pub fn promote(&self) {
        let pg_ctl = self.bindir.join("pg_ctl");
        self.run_ok(
            pg_ctl.to_str().unwrap(),
            &["-D", self.data().to_str().unwrap(), "-w", "promote"],
        );
    }

    /// The pid of the callback runner of `client`'s database, once it is up.
    pub fn callback_runner_pid(&self, client: &mut Client) -> i32 {
        let mut pid = 0;
        wait_until(Duration::from_secs(60), "the callback runner", || {
            pid = client
                .query_opt(
                    "SELECT pid FROM pg_stat_activity
                      WHERE backend_type = 'pg_webhook callbacks' AND datname = current_database()",
                    &[],
                )
                .unwrap_or_else(|e| panic!("finding the callback runner: {e}"))
                .map_or(0, |r| r.get(0));
            pid != 0
        });
        pid
    }

    /// Every delivery worker's pid (there are `pg_webhook.workers`).
    pub fn worker_pids(&self, client: &mut Client) -> Vec<i32> {
        self.worker_pid(client);
        client
            .query(
                "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_webhook' ORDER BY pid",
                &[],
            )
            .map(|rows| rows.iter().map(|r| r.get(0)).collect())
            .unwrap_or_default()
    }
}
