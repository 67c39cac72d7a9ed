//! The part of pg_webhook that knows nothing of Postgres: how a webhook is signed, what its body
//! looks like, when it is retried, where it may go, and how it is sent. The extension wraps it;
//! everything here is tested with plain `cargo test -p pg_webhook_core`.

pub mod address;
pub mod auth;
pub mod batch;
pub mod endpoint;
pub mod headers;
pub mod http;
pub mod json_escapes;
pub mod limits;
pub mod operation;
pub mod order_key;
pub mod payload;
pub mod rescan;
pub mod retry;
pub mod signing;
pub mod text;

pub use bytes::Bytes;
pub use reqwest::header;
pub use reqwest::header::HeaderMap;
pub use reqwest::Url;
