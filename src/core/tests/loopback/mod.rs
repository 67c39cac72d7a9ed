//! A loopback HTTP/1.1 server for the core's tests: records each request and answers what the
//! test says.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use pg_webhook_core::Url;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A received request: lower-cased header names, raw body.
#[derive(Debug, Clone)]
pub struct Seen {
    pub head: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

pub async fn read_request(stream: &mut TcpStream) -> Option<Seen> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let header_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).to_string();
    let headers: Vec<(String, String)> = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[header_end + 4..].to_vec();
    while body.len() < len {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Seen {
        head,
        headers,
        body,
    })
}

/// Serves every connection with `respond`, recording requests.
pub async fn serve<F>(respond: F) -> (Url, Arc<Mutex<Vec<Seen>>>)
where
    F: Fn(&Seen, &mut TcpStream) -> Vec<u8> + Send + Sync + 'static,
{
    let (url, seen, _) = serve_counting(respond).await;
    (url, seen)
}

/// Like `serve`, and also counts accepted connections.
pub async fn serve_counting<F>(respond: F) -> (Url, Arc<Mutex<Vec<Seen>>>, Arc<AtomicUsize>)
where
    F: Fn(&Seen, &mut TcpStream) -> Vec<u8> + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = Url::parse(&format!("http://{}/hook", listener.local_addr().unwrap())).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let connections = Arc::new(AtomicUsize::new(0));
    let log = seen.clone();
    let counter = connections.clone();
    let respond = Arc::new(respond);
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            counter.fetch_add(1, Ordering::SeqCst);
            let log = log.clone();
            let respond = respond.clone();
            tokio::spawn(async move {
                while let Some(req) = read_request(&mut stream).await {
                    log.lock().unwrap().push(req.clone());
                    let out = respond(&req, &mut stream);
                    if out.is_empty() || stream.write_all(&out).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, seen, connections)
}
