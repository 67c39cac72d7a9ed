//! Subscriptions as the worker uses them: parsed once per load into ready-to-send endpoints, so
//! each delivery only clones an `Arc`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use pg_webhook_core::auth::{parse_auth, ClientIdentity};
use pg_webhook_core::endpoint::parse_url;
use pg_webhook_core::headers::parse_headers;
use pg_webhook_core::http::{Credentials, Endpoint};
use pg_webhook_core::limits::LimitSpec;
use pg_webhook_core::payload::Format;
use pg_webhook_core::retry::RetryPolicy;
use pg_webhook_core::signing::Secret;

use crate::queue::SubscriptionRow;

/// A subscription ready for delivery, or the reason it cannot be used.
#[derive(Debug, Clone)]
pub struct Target {
    pub uid: String,
    pub status: String,
    /// Whether the subscription is recorded as failing (for auto-disable).
    pub failing: bool,
    pub format: Format,
    pub config: Result<(Arc<Endpoint>, Arc<RetryPolicy>), String>,
    /// One event at a time (of each key, when `keyed`), in id (= commit) order.
    pub ordered: bool,
    /// Ordered per key rather than as a whole.
    pub keyed: bool,
    /// One request per committed transaction (`group_by => 'transaction'`).
    pub grouped: bool,
    /// The subscription's own limits, on top of the worker's.
    pub limits: LimitSpec,
    pub has_callback: bool,
    /// Why its owner may no longer read its table; its events are then held, not sent.
    pub read_denied: Option<String>,
    /// Whether its row says so (`_subscriptions.read_denied`), for when the table is gone.
    pub read_denied_noted: bool,
    pub name: String,
    /// Events per request (1: each alone, in its plain body).
    pub batch_size: usize,
    /// How long a partial batch of new events waits for more.
    pub batch_wait: Duration,
}

impl Target {
    /// Served by one worker (the subscription id modulo the worker count), so its limits and
    /// order are kept in one place, and a partial batch waiting out `batch_wait` gathers every
    /// event that comes meanwhile (with its events shared out, each worker would send its own).
    pub fn pinned(&self) -> bool {
        self.ordered
            || self.grouped
            || self.limits != LimitSpec::default()
            || (self.batched() && !self.batch_wait.is_zero())
    }

    /// Sends several events per request.
    pub fn batched(&self) -> bool {
        self.batch_size > 1
    }

    /// The most events one of its requests carries.
    pub fn events_per_request(&self) -> usize {
        self.batch_size.max(1)
    }

    /// How many more requests it may start under its own `max_in_flight`, holding `held`.
    pub fn limit_room(&self, held: usize) -> usize {
        (self.limits.max_in_flight).map_or(usize::MAX, |max| max.saturating_sub(held))
    }

    /// Paused and disabled subscriptions keep queueing but send nothing; an unsubscribed one
    /// still delivers what was queued before. Nothing is sent for an owner who may no longer
    /// read the whole table.
    pub fn sends(&self) -> bool {
        matches!(self.status.as_str(), "active" | "unsubscribed") && self.read_denied.is_none()
    }
}

pub fn build(rows: Vec<SubscriptionRow>, default_timeout: Duration) -> HashMap<i32, Target> {
    // Identities of subscriptions no longer loaded (unsubscribed and drained) are forgotten.
    let loaded: std::collections::HashSet<i32> = rows.iter().map(|r| r.id).collect();
    IDENTITIES.with_borrow_mut(|seen| seen.retain(|id, _| loaded.contains(id)));
    OWNERS.set(Rc::new(Owners {
        several: rows.iter().any(|r| r.owner != rows[0].owner),
        of: rows.iter().map(|r| (r.id, r.owner)).collect(),
    }));
    rows.into_iter()
        .map(|row| {
            let config = parse(&row, default_timeout)
                .map_err(|e| format!("subscription {} is misconfigured: {e}", row.id));
            (
                row.id,
                Target {
                    uid: row.uid,
                    status: row.status,
                    failing: row.failing_since,
                    // A bad value cannot pass the table's CHECK; default rather than fail.
                    format: row.format.parse().unwrap_or(Format::Database),
                    config,
                    ordered: row.ordered || row.keyed,
                    keyed: row.keyed,
                    grouped: row.grouped,
                    limits: LimitSpec {
                        max_in_flight: row.max_in_flight.map(|n| n.max(1) as usize),
                        rate_limit: row.rate_limit.and_then(LimitSpec::usable_rate),
                    },
                    has_callback: row.has_callback,
                    read_denied: row.read_denied,
                    read_denied_noted: row.read_denied_noted,
                    name: row.name,
                    batch_size: row.batch_size.clamp(1, 1000) as usize,
                    batch_wait: Duration::from_millis(row.batch_wait_ms.clamp(0, 60_000) as u64),
                },
            )
        })
        .collect()
}

/// The stored values were validated by subscribe(); this re-validates because the tables can be
/// edited by hand, and a bad value must fail one subscription's events, not the worker.
pub(crate) fn parse(
    row: &SubscriptionRow,
    default_timeout: Duration,
) -> Result<(Arc<Endpoint>, Arc<RetryPolicy>), String> {
    let url = parse_url(&row.url).map_err(|e| e.to_string())?;
    let secret = Secret::parse(&row.secret).map_err(|e| e.to_string())?;
    // During a rotation both secrets sign, newest first.
    let mut secrets = vec![secret];
    if let Some(previous) = &row.previous_secret {
        secrets.push(Secret::parse(previous).map_err(|e| format!("previous secret: {e}"))?);
    }
    let json: serde_json::Value =
        serde_json::from_str(&row.headers).map_err(|e| format!("headers: {e}"))?;
    let headers = parse_headers(&json).map_err(|e| e.to_string())?;
    let timeout = match row.timeout_ms {
        Some(ms) if ms > 0 => Duration::from_millis(ms as u64),
        _ => default_timeout,
    };
    let auth = credentials(row)?;
    let policy = RetryPolicy::new(
        row.retry_schedule_ms.as_deref(),
        Some(row.max_attempts as i64),
    )
    .map_err(|e| e.to_string())?;
    Ok((
        Arc::new(Endpoint {
            url,
            secrets,
            headers,
            timeout,
            keep_response_headers: row.has_callback,
            auth,
        }),
        Arc::new(policy),
    ))
}

/// The client certificate and OAuth 2.0 credentials a subscription's receiver demands.
fn credentials(row: &SubscriptionRow) -> Result<Credentials, String> {
    let identity = match (&row.client_cert, &row.client_key) {
        (None, None) => None,
        (Some(cert), Some(key)) => Some(identity(row.id, cert, key)?),
        _ => return Err("client_cert and client_key must be set together".into()),
    };
    let oauth2 = match &row.auth {
        None => None,
        Some(text) => {
            let json: serde_json::Value =
                serde_json::from_str(text).map_err(|e| format!("auth: {e}"))?;
            Some(parse_auth(&json).map_err(|e| e.0)?)
        }
    };
    Ok(Credentials {
        subscription: row.id,
        identity,
        oauth2,
    })
}

thread_local! {
    /// Identities parsed at earlier loads, by subscription: the worker reloads its subscriptions
    /// every second, and checking a key against its certificate costs about 0.1 ms.
    static IDENTITIES: RefCell<HashMap<i32, (String, String, ClientIdentity)>> =
        RefCell::new(HashMap::new());
    /// Each subscription's owner, as the last `build` loaded them (see `owners`).
    static OWNERS: RefCell<Rc<Owners>> = RefCell::default();
}

fn identity(id: i32, cert: &str, key: &str) -> Result<ClientIdentity, String> {
    let known = IDENTITIES.with_borrow(|seen| {
        seen.get(&id)
            .filter(|(c, k, _)| c == cert && k == key)
            .map(|(_, _, identity)| identity.clone())
    });
    if let Some(identity) = known {
        return Ok(identity);
    }
    let identity = ClientIdentity::parse(cert, key).map_err(|e| e.0)?;
    IDENTITIES.with_borrow_mut(|seen| {
        seen.insert(id, (cert.to_string(), key.to_string(), identity.clone()))
    });
    Ok(identity)
}

/// The owners of the subscriptions the worker loaded last: a worker's requests are shared
/// between owners when there are several (worker/plan/owners.rs).
#[derive(Debug, Default)]
pub struct Owners {
    /// Each loaded subscription's owner.
    pub of: HashMap<i32, pgrx::pg_sys::Oid>,
    /// Whether they are more than one.
    pub several: bool,
}

/// The owners of the subscriptions the worker loaded last.
pub fn owners() -> Rc<Owners> {
    OWNERS.with_borrow(Rc::clone)
}
