//! Loopback TLS for the end-to-end tests: certificates made with openssl, and the Python HTTPS
//! receiver (tests/support/https_receiver.py), demanding a client certificate or not.

use std::path::PathBuf;
use std::process::{Child, Command};

use super::cluster::{free_port, wait_until};
use super::WAIT;

/// Certificates made with the openssl command for one test: a server CA and its leaf for
/// 127.0.0.1, a client CA with one client, and a self-signed client nobody trusts.
pub struct Pki {
    dir: PathBuf,
}

impl Pki {
    pub fn new(name: &str) -> Pki {
        let dir = std::env::temp_dir().join(format!("pg_webhook_{name}_{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a directory for the certificates");
        let pki = Pki { dir };
        let ec = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
        pki.sh(&format!(
            "openssl req -x509 {ec} -keyout ca.key -out ca.pem -days 2 -subj /CN=test-server-ca"
        ));
        pki.sh(&format!(
            "openssl req {ec} -keyout leaf.key -out leaf.csr -subj /CN=127.0.0.1"
        ));
        pki.sh("printf 'subjectAltName=IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\nextendedKeyUsage=serverAuth\\n' > leaf.ext && \
                openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out leaf.pem -days 2 -extfile leaf.ext");
        pki.sh(&format!("openssl req -x509 {ec} -keyout client-ca.key -out client-ca.pem -days 2 -subj /CN=test-client-ca"));
        pki.sh(&format!(
            "openssl req {ec} -keyout client.key -out client.csr -subj /CN=pg_webhook"
        ));
        pki.sh("printf 'basicConstraints=CA:FALSE\\nextendedKeyUsage=clientAuth\\n' > client.ext && \
                openssl x509 -req -in client.csr -CA client-ca.pem -CAkey client-ca.key -CAcreateserial -out client.pem -days 2 -extfile client.ext");
        pki.sh("chmod 644 *.pem *.key && chmod 755 .");
        pki
    }

    fn sh(&self, script: &str) {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("{script} 2>&1"))
            .current_dir(&self.dir)
            .output()
            .expect("sh");
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    pub fn read(&self, file: &str) -> String {
        std::fs::read_to_string(self.path(file)).expect("a certificate file")
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The Python HTTPS receiver, serving the leaf certificate of a `Pki`; it logs
/// "<webhook-id> <record id> <authorization>" per delivery it answers, and serves OAuth tokens
/// at /token.
pub struct HttpsReceiver {
    child: Child,
    pub port: u16,
    log: PathBuf,
}

impl HttpsReceiver {
    /// One that lets any client through the handshake.
    pub fn start(pki: &Pki) -> HttpsReceiver {
        Self::spawn(pki, None)
    }

    /// One that lets only clients with a certificate of the `Pki`'s client CA through.
    pub fn demanding_client_certificates(pki: &Pki) -> HttpsReceiver {
        Self::spawn(pki, Some(pki.path("client-ca.pem")))
    }

    fn spawn(pki: &Pki, client_ca: Option<PathBuf>) -> HttpsReceiver {
        let port = free_port();
        let log = pki.path("received.log");
        let script = pki.path("https_receiver.py");
        std::fs::write(&script, include_str!("https_receiver.py")).expect("script");
        let child = Command::new("python3")
            .arg(&script)
            .arg(port.to_string())
            .arg(pki.path("leaf.pem"))
            .arg(pki.path("leaf.key"))
            .arg(&log)
            .args(client_ca)
            .spawn()
            .expect("python3 for the HTTPS receiver");
        wait_until(WAIT, "the HTTPS receiver to listen", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        HttpsReceiver { child, port, log }
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}/hook", self.port)
    }

    /// "<grant type> <protocol agreed by ALPN>" of each token request it answered.
    pub fn token_requests(&self) -> Vec<String> {
        let mut path = self.log.clone().into_os_string();
        path.push(".tokens");
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// The Authorization header of each delivery it answered ("-" for none).
    pub fn authorizations(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.splitn(3, ' ').nth(2).map(str::to_string))
            .collect()
    }

    /// (webhook-id, record id) of each delivery it answered.
    pub fn deliveries(&self) -> Vec<(String, String)> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let mut fields = l.split(' ');
                Some((fields.next()?.to_string(), fields.next()?.to_string()))
            })
            .collect()
    }

    /// The webhook-ids it answered.
    pub fn received(&self) -> Vec<String> {
        self.deliveries().into_iter().map(|(id, _)| id).collect()
    }
}

impl Drop for HttpsReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
