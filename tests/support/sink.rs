//! A fast HTTP sink for the benchmark: answers every POST with 204 over keep-alive connections
//! on one thread, counts requests and, when asked, notes when each row id arrived.

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
}

impl Sink {
    pub fn start() -> Sink {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("sink bind");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let port = std_listener.local_addr().expect("sink addr").port();
        let count = Arc::new(AtomicU64::new(0));
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let track_ids = Arc::new(AtomicBool::new(false));
        let (c, a, t) = (count.clone(), arrivals.clone(), track_ids.clone());
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
                    tokio::spawn(async move {
                        let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
                        let mut chunk = vec![0u8; 64 * 1024];
                        loop {
                            // Answer every complete request in the buffer.
                            let mut replies = 0;
                            while let Some(len) = complete_request(&buf) {
                                if t.load(Ordering::Relaxed) {
                                    if let Some(id) = row_id(&buf[..len]) {
                                        a.lock().unwrap().push((id, Instant::now()));
                                    }
                                }
                                buf.drain(..len);
                                replies += 1;
                            }
                            if replies > 0 {
                                c.fetch_add(replies, Ordering::Relaxed);
                                let out =
                                    b"HTTP/1.1 204 No Content\r\n\r\n".repeat(replies as usize);
                                if stream.write_all(&out).await.is_err() {
                                    return;
                                }
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
        }
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
