//! A real HTTP/1.1 receiver on 127.0.0.1 for end-to-end tests: records every request and answers
//! as the test says — any status, a Retry-After, a hang, a dropped connection, garbage.
//!
//! Signatures are checked with the `standardwebhooks` crate, an implementation that is not ours.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use pg_webhook_core::HeaderMap;

use super::cluster::wait_until;

/// One received request.
#[derive(Debug, Clone)]
pub struct Request {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub at: Instant,
    /// The sender's address (the test can find the process behind it while it waits for the
    /// answer: tests/support/patroni/senders.rs does).
    pub peer: Option<std::net::SocketAddr>,
    /// Which accepted connection it came on (unique per receiver process): a sender's port can
    /// be reused by another connection once the first is gone.
    pub connection: u64,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn id(&self) -> String {
        self.header("webhook-id").unwrap_or_default().to_string()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("the body is JSON")
    }

    /// The `id` column of each row a batch or transaction request carries, in order (-1 for
    /// an event without one).
    pub fn row_ids(&self) -> Vec<i64> {
        self.json()["events"]
            .as_array()
            .map(|events| {
                events
                    .iter()
                    .map(|e| e["payload"]["record"]["id"].as_i64().unwrap_or(-1))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Verifies the Standard Webhooks signature with the stock `standardwebhooks` crate.
    pub fn verify(&self, secret: &str) -> Result<(), String> {
        let mut headers = HeaderMap::new();
        for (n, v) in &self.headers {
            let name: pg_webhook_core::header::HeaderName =
                n.parse().map_err(|e| format!("{e}"))?;
            headers.append(name, v.parse().map_err(|e| format!("{e}"))?);
        }
        let wh = standardwebhooks::Webhook::new(secret).map_err(|e| format!("{e:?}"))?;
        wh.verify(&self.body, &headers)
            .map_err(|e| format!("{e:?}"))
    }
}

/// How to answer one request.
#[derive(Debug, Clone)]
pub enum Reply {
    Status(u16),
    Full {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
    /// Keep the connection open without answering, then close it.
    Hang(Duration),
    /// Close the connection without answering.
    Drop,
    /// Write these raw bytes and close.
    Raw(Vec<u8>),
    /// Answer with this status after a delay.
    Delay(Duration, u16),
}

type Behaviour = dyn Fn(&Request, usize) -> Reply + Send + Sync;

pub struct Receiver {
    pub port: u16,
    requests: Arc<Mutex<Vec<Request>>>,
    /// Status answered to each request (0: none, the connection was dropped or hung).
    answers: Arc<Mutex<Vec<(usize, u16)>>>,
    behaviour: Arc<Mutex<Arc<Behaviour>>>,
    load: Arc<Load>,
}

/// How many requests are being answered at once, and the most ever.
#[derive(Default)]
struct Load {
    now: AtomicUsize,
    peak: AtomicUsize,
    connections: AtomicUsize,
}

impl Receiver {
    /// Answers every request with 204.
    pub fn start() -> Receiver {
        Receiver::with(|_, _| Reply::Status(204))
    }

    /// Answers 204 once the gate returned with it is opened (or after a minute), so the events
    /// it was sent stay in the queue, in flight, for as long as a test needs (a fixed delay
    /// could be outlasted by a slow machine).
    pub fn gated() -> (Receiver, Arc<AtomicBool>) {
        let gate = Arc::new(AtomicBool::new(false));
        let open = gate.clone();
        let rx = Receiver::with(move |_, _| {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !open.load(Ordering::SeqCst) && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(5));
            }
            Reply::Status(204)
        });
        (rx, gate)
    }

    /// Answers with `f(request, index of this request among all received)`.
    pub fn with(f: impl Fn(&Request, usize) -> Reply + Send + Sync + 'static) -> Receiver {
        Receiver::on_port(0, f)
    }

    pub fn on_port(
        port: u16,
        f: impl Fn(&Request, usize) -> Reply + Send + Sync + 'static,
    ) -> Receiver {
        Receiver::on_port_watching(port, None, f)
    }

    /// As `on_port`, calling `watch(connection, peer)` as each connection is accepted, before
    /// its first request is read: the sender is then still connected (tests/support/patroni
    /// finds the process behind it).
    pub fn on_port_watching(
        port: u16,
        watch: Option<Watch>,
        f: impl Fn(&Request, usize) -> Reply + Send + Sync + 'static,
    ) -> Receiver {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("binding the receiver");
        let port = listener.local_addr().expect("receiver address").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let behaviour: Arc<Mutex<Arc<Behaviour>>> = Arc::new(Mutex::new(Arc::new(f)));
        let load = Arc::new(Load::default());
        let answers = Arc::new(Mutex::new(Vec::new()));
        let (log, how, gauge, said) = (
            requests.clone(),
            behaviour.clone(),
            load.clone(),
            answers.clone(),
        );
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                gauge.connections.fetch_add(1, Ordering::SeqCst);
                let (log, how, gauge, said) =
                    (log.clone(), how.clone(), gauge.clone(), said.clone());
                let watch = watch.clone();
                thread::spawn(move || serve(stream, &log, &how, &gauge, &said, watch));
            }
        });
        Receiver {
            port,
            requests,
            answers,
            behaviour,
            load,
        }
    }

    /// The requests that were answered with a 2xx status.
    pub fn accepted(&self) -> Vec<Request> {
        let requests = self.requests();
        let answers = self.answers.lock().unwrap().clone();
        answers
            .iter()
            .filter(|(_, status)| (200..300).contains(status))
            .filter_map(|(i, _)| requests.get(*i).cloned())
            .collect()
    }

    /// The `record.id` of each request answered 2xx, in arrival order.
    pub fn accepted_ids(&self) -> Vec<i64> {
        self.accepted()
            .iter()
            .filter_map(|r| r.json()["record"]["id"].as_i64())
            .collect()
    }

    /// The most requests that were being answered at the same time.
    pub fn peak_concurrency(&self) -> usize {
        self.load.peak.load(Ordering::SeqCst)
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.load.connections.load(Ordering::SeqCst)
    }

    pub fn set(&self, f: impl Fn(&Request, usize) -> Reply + Send + Sync + 'static) {
        *self.behaviour.lock().unwrap() = Arc::new(f);
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    /// Waits until at least `n` requests have been answered (a request is logged as it
    /// arrives, its answer a moment later: `accepted` right after `wait_for` could miss the
    /// last one) and returns all that arrived.
    pub fn wait_for_answers(&self, n: usize, timeout: Duration) -> Vec<Request> {
        wait_until(timeout, &format!("{n} requests answered"), || {
            self.answers.lock().unwrap().len() >= n
        });
        self.requests()
    }

    /// Waits until at least `n` requests arrived and returns them all.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Request> {
        wait_until(timeout, &format!("{n} requests at the receiver"), || {
            self.count() >= n
        });
        self.requests()
    }
}

/// Called with (connection, sender's address) as each connection is accepted.
pub type Watch = Arc<dyn Fn(u64, std::net::SocketAddr) + Send + Sync>;

/// Numbers the accepted connections (see `Request::connection`).
static NEXT_CONNECTION: AtomicU64 = AtomicU64::new(0);

fn serve(
    stream: TcpStream,
    log: &Mutex<Vec<Request>>,
    how: &Mutex<Arc<Behaviour>>,
    load: &Load,
    answers: &Mutex<Vec<(usize, u16)>>,
    watch: Option<Watch>,
) {
    let mut writer = match stream.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let peer = writer.peer_addr().ok();
    let connection = NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed);
    if let (Some(watch), Some(peer)) = (&watch, peer) {
        watch(connection, peer);
    }
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((n, v)) = h.split_once(':') {
                headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let len: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let request = Request {
            path,
            headers,
            body,
            at: Instant::now(),
            peer,
            connection,
        };
        let index = {
            let mut log = log.lock().unwrap();
            log.push(request.clone());
            log.len() - 1
        };
        let behaviour = how.lock().unwrap().clone();
        let reply = behaviour(&request, index);
        let status = match &reply {
            Reply::Status(s) | Reply::Delay(_, s) => *s,
            Reply::Full { status, .. } => *status,
            Reply::Hang(_) | Reply::Drop | Reply::Raw(_) => 0,
        };
        let active = load.now.fetch_add(1, Ordering::SeqCst) + 1;
        load.peak.fetch_max(active, Ordering::SeqCst);
        let bytes = answer(reply, &mut writer);
        load.now.fetch_sub(1, Ordering::SeqCst);
        let Some(bytes) = bytes else { return };
        // Recorded before writing: a client may hang up after the status line (a sender reading
        // only an excerpt of a huge body does), and the answer still counts.
        answers.lock().unwrap().push((index, status));
        if writer.write_all(&bytes).is_err() {
            return;
        }
    }
}

/// The bytes to write for `reply`, or `None` when the connection was closed instead.
fn answer(reply: Reply, writer: &mut TcpStream) -> Option<Vec<u8>> {
    Some(match reply {
        Reply::Status(status) => response(status, &[], ""),
        Reply::Full {
            status,
            headers,
            body,
        } => response(status, &headers, &body),
        Reply::Delay(d, status) => {
            thread::sleep(d);
            response(status, &[], "")
        }
        Reply::Hang(d) => {
            thread::sleep(d);
            let _ = writer.shutdown(Shutdown::Both);
            return None;
        }
        Reply::Drop => {
            let _ = writer.shutdown(Shutdown::Both);
            return None;
        }
        Reply::Raw(bytes) => {
            let _ = writer.write_all(&bytes);
            let _ = writer.shutdown(Shutdown::Both);
            return None;
        }
    })
}

fn response(status: u16, headers: &[(String, String)], body: &str) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status} X\r\ncontent-length: {}\r\n", body.len());
    for (n, v) in headers {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(body);
    out.into_bytes()
}
