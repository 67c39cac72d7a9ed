//! A fast HTTP sink for the benchmarks: answers every POST with 204 (or, when asked, one in N
//! with 503) over keep-alive connections on one thread, counts requests and the unique
//! webhook-ids of the events it accepted (those inside batches too), so duplicates cannot
//! inflate a rate, and, when asked, notes when each row id arrived and which rows were accepted.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

pub struct Sink {
    pub port: u16,
    pub count: Arc<AtomicU64>,
    pub arrivals: Arc<Mutex<Vec<(i64, Instant)>>>,
    pub track_ids: Arc<AtomicBool>,
    /// Answer one request in this many with 503 (0: never).
    pub fail_one_in: Arc<AtomicU64>,
    /// Row ids of the requests answered 2xx, when `track_accepted` is set.
    pub accepted: Arc<Mutex<HashSet<i64>>>,
    pub track_accepted: Arc<AtomicBool>,
    /// The webhook-ids of the events accepted (each event's own inside a batch).
    pub unique: Arc<Mutex<HashSet<String>>>,
}

impl Sink {
    pub fn start() -> Sink {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("sink bind");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let port = std_listener.local_addr().expect("sink addr").port();
        let count = Arc::new(AtomicU64::new(0));
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let track_ids = Arc::new(AtomicBool::new(false));
        let fail_one_in = Arc::new(AtomicU64::new(0));
        let accepted = Arc::new(Mutex::new(HashSet::new()));
        let track_accepted = Arc::new(AtomicBool::new(false));
        let unique = Arc::new(Mutex::new(HashSet::new()));
        let (c, a, t) = (count.clone(), arrivals.clone(), track_ids.clone());
        let (f, ok, ta, u) = (
            fail_one_in.clone(),
            accepted.clone(),
            track_accepted.clone(),
            unique.clone(),
        );
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("sink runtime");
            rt.block_on(async move {
                let listener = TcpListener::from_std(std_listener).expect("sink listener");
                loop {
                    let Ok((mut stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let (c, a, t) = (c.clone(), a.clone(), t.clone());
                    let (f, ok, ta, u) = (f.clone(), ok.clone(), ta.clone(), u.clone());
                    tokio::spawn(async move {
                        let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
                        let mut chunk = vec![0u8; 64 * 1024];
                        loop {
                            // Answer every complete request in the buffer.
                            let mut out = Vec::new();
                            while let Some(len) = complete_request(&buf) {
                                let n = c.fetch_add(1, Ordering::Relaxed) + 1;
                                let every = f.load(Ordering::Relaxed);
                                if every > 0 && n.is_multiple_of(every) {
                                    out.extend_from_slice(
                                        b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n",
                                    );
                                } else {
                                    if t.load(Ordering::Relaxed) {
                                        if let Some(id) = row_id(&buf[..len]) {
                                            a.lock().unwrap().push((id, Instant::now()));
                                        }
                                    }
                                    if ta.load(Ordering::Relaxed) {
                                        if let Some(id) = row_id(&buf[..len]) {
                                            ok.lock().unwrap().insert(id);
                                        }
                                    }
                                    let ids = webhook_ids(&buf[..len]);
                                    u.lock().unwrap().extend(ids);
                                    out.extend_from_slice(b"HTTP/1.1 204 No Content\r\n\r\n");
                                }
                                buf.drain(..len);
                            }
                            if !out.is_empty() && stream.write_all(&out).await.is_err() {
                                return;
                            }
                            match stream.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                    });
                }
            });
        });
        Sink {
            port,
            count,
            arrivals,
            track_ids,
            fail_one_in,
            accepted,
            track_accepted,
            unique,
        }
    }

    /// Events accepted so far, each counted once by its webhook-id.
    pub fn unique_events(&self) -> u64 {
        self.unique.lock().unwrap().len() as u64
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/sink", self.port)
    }

    pub fn received(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

/// Length of the first complete request in `buf`, if there is one.
fn complete_request(buf: &[u8]) -> Option<usize> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    let len = head
        .split("\r\n")
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    (buf.len() >= end + len).then_some(end + len)
}

/// The `"id": N` of the record in a request body.
fn row_id(request: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(request).ok()?;
    let at = text.find("\"record\":")?;
    let rest = &text[at..];
    let id_at = rest.find("\"id\": ")? + 6;
    let digits: String = rest[id_at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// The webhook-ids of the events in a request: each `"webhook_id":"…"` of a batch body, or
/// else the request's `webhook-id` header.
fn webhook_ids(request: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(request);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut ids: Vec<String> = body
        .split("\"webhook_id\":\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next().map(str::to_string))
        .collect();
    if ids.is_empty() {
        ids.extend(head.split("\r\n").find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case("webhook-id")
                .then(|| v.trim().to_string())
        }));
    }
    ids
}
