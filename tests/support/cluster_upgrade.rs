//! `pg_upgrade` of a test cluster into a new one, as a DBA moving to a new server would.

use std::sync::atomic::Ordering;

use super::{free_port, Cluster, NEXT};

impl Cluster {
    /// Stops this cluster (fast), makes a new one with `initdb` and the same settings, runs
    /// `pg_upgrade` from this one into it and starts it. This one is left stopped.
    pub fn upgrade(&self) -> Cluster {
        self.stop("fast");
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let new = Cluster {
            dir: std::env::temp_dir().join(format!("pg_webhook_test_{}_{n}", std::process::id())),
            port: free_port(),
            bindir: self.bindir.clone(),
            runas: self.runas.clone(),
        };
        new.initdb();
        let (old_data, new_data) = (self.data(), new.data());
        // The old settings (the last line of each wins), on the new port and socket.
        let old_conf = String::from_utf8_lossy(
            &self
                .run_ok("cat", &[old_data.join("postgresql.conf").to_str().unwrap()])
                .stdout,
        )
        .into_owned();
        new.append_conf(&format!(
            "{old_conf}\nport = {}\nunix_socket_directories = '{}'\n",
            new.port,
            new.dir.display()
        ));
        let bindir = self.bindir.to_str().unwrap();
        let (old_port, new_port) = (self.port.to_string(), new.port.to_string());
        let mut upgrade = new.command(
            self.bindir.join("pg_upgrade").to_str().unwrap(),
            &[
                "-b",
                bindir,
                "-B",
                bindir,
                "-d",
                old_data.to_str().unwrap(),
                "-D",
                new_data.to_str().unwrap(),
                "-p",
                &old_port,
                "-P",
                &new_port,
                "-U",
                "postgres",
                "--no-sync",
            ],
        );
        // pg_upgrade writes its logs and sockets where it runs.
        let out = upgrade
            .current_dir(&new.dir)
            .output()
            .unwrap_or_else(|e| panic!("running pg_upgrade: {e}"));
        assert!(
            out.status.success(),
            "pg_upgrade failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        new.pg_ctl_start();
        new
    }

    /// Dumps database `from` and restores it into a new database `to`.
    pub fn restore_copy(&self, from: &str, to: &str) {
        let dump = self.dir.join(format!("{from}.dump"));
        let dump = dump.to_str().unwrap();
        self.tool("pg_dump", &["-Fc", "-d", from, "-f", dump]);
        self.connect("postgres")
            .batch_execute(&format!("CREATE DATABASE {to}"))
            .unwrap();
        self.tool("pg_restore", &["--exit-on-error", "-d", to, dump]);
    }
}
