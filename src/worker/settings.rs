//! The settings a pg_webhook background process runs with: the server's, not those of the
//! database it serves or of its role, apart from how values are written and read.
//!
//! PostgreSQL applies `ALTER DATABASE ... SET` and `ALTER ROLE ... SET` to background workers as
//! they connect, and a database's owner may make most of them. Through them the workers'
//! statements could be planned badly (`enable_nestloop = off` made every outcome recorded read
//! the whole queue: a backlog drained in quadratic time), any caught ERROR could end the process
//! (`exit_on_error`), or the workers could be hijacked or stopped (`role`, `search_path`,
//! `session_authorization`). So the process notes the server's value of every setting before it
//! connects, and in its first transaction puts those back over whatever the database and role
//! settings changed — except the ones that say how values are written and read (`KEPT`: what
//! the workers render, and the user SQL they run, mean what they mean in the database's
//! sessions) and what is logged or counted — then pins the few values it relies on whatever
//! the server says (`PINNED`).

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::sync::atomic::{fence, Ordering};

use pgrx::pg_sys;

/// Values the workers rely on, pinned over the server's too:
/// - `role`: a database's owner may set it, and the workers would run as that role;
/// - `search_path`: the process's first queries resolved names through it, so an operator a
///   database owner put in `public` ran as the bootstrap superuser;
/// - `default_transaction_isolation`: under REPEATABLE READ a backfill chunk keeps the snapshot
///   it started with, and its read after waiting out an ordered subscription's writers saw rows
///   older than events already sent (a stale row sent last);
/// - `default_transaction_read_only`: every claim failed, and nothing was delivered;
/// - `plan_cache_mode`, `enable_indexscan`, `enable_indexonlyscan`: the worker's statements are
///   planned for index scans, some with one kept generic plan and those that join the queue
///   left to `auto` (see queue/mod.rs); `force_generic_plan` had every outcome recorded by
///   reading the whole queue once it was full;
/// - `exit_on_error`: would turn every ERROR the workers catch and go on from into the end of
///   the process.
const PINNED: [(&CStr, &CStr); 8] = [
    (c"role", c"none"),
    (c"search_path", c"pg_catalog, pg_temp"),
    (c"default_transaction_isolation", c"read committed"),
    (c"default_transaction_read_only", c"off"),
    (c"plan_cache_mode", c"auto"),
    (c"enable_indexscan", c"on"),
    (c"enable_indexonlyscan", c"on"),
    (c"exit_on_error", c"off"),
];

/// Settings a database or role keeps for the workers: how values are written and read (a
/// database's `TimeZone` is the offset the timestamps the workers render carry, and a
/// backfill's filter is read as the database's sessions read it), compared without case. So
/// are logging and statistics settings (`log_*`, `track_*`) and those of other libraries or
/// placeholders (names with a dot), whose meaning pg_webhook cannot know.
const KEPT: [&str; 20] = [
    "DateStyle",
    "IntervalStyle",
    "TimeZone",
    "timezone_abbreviations",
    "extra_float_digits",
    "bytea_output",
    "lc_messages",
    "lc_monetary",
    "lc_numeric",
    "lc_time",
    "standard_conforming_strings",
    "backslash_quote",
    "escape_string_warning",
    "array_nulls",
    "transform_null_equals",
    "quote_all_identifiers",
    "xmlbinary",
    "xmloption",
    "client_encoding",
    "default_text_search_config",
];

fn kept(name: &str) -> bool {
    name.starts_with("log_")
        || name.starts_with("track_")
        || name.contains('.')
        || KEPT.iter().any(|k| k.eq_ignore_ascii_case(name))
}

/// What `ServerSettings::restore` did with the database's and role's settings.
#[derive(Default)]
pub struct Restored {
    /// Put back to the server's value.
    pub restored: Vec<String>,
    /// Left as the database or role set them, though not in `KEPT`: the server has no value to
    /// put back, or refused it (each with why).
    pub left: Vec<String>,
}

/// The server's settings as this process got them from the postmaster (configuration files,
/// `ALTER SYSTEM`, command line, defaults), by name.
pub struct ServerSettings(HashMap<CString, CString>);

/// Every setting PostgreSQL knows in this process.
fn all_settings() -> Vec<*mut pg_sys::config_generic> {
    // SAFETY: the GUC array of this process, read on the main thread; PostgreSQL keeps its
    // length in GetNumConfigOptions.
    unsafe {
        let list = pg_sys::get_guc_variables();
        let n = pg_sys::GetNumConfigOptions().max(0) as usize;
        if list.is_null() {
            return Vec::new();
        }
        std::slice::from_raw_parts(list, n).to_vec()
    }
}

/// Whether `source` is a database's or a role's setting (`pg_db_role_setting`).
fn from_database_or_role(source: pg_sys::GucSource::Type) -> bool {
    matches!(
        source,
        pg_sys::GucSource::PGC_S_DATABASE
            | pg_sys::GucSource::PGC_S_USER
            | pg_sys::GucSource::PGC_S_DATABASE_USER
    )
}

impl ServerSettings {
    /// Notes every setting's value; to be called before the process connects to a database.
    pub fn take() -> ServerSettings {
        let mut values = HashMap::new();
        for var in all_settings() {
            // SAFETY: entries of the GUC array are valid settings with NUL-terminated names.
            unsafe {
                if (*var).flags & pg_sys::GUC_CUSTOM_PLACEHOLDER as i32 != 0 {
                    continue;
                }
                let name = CStr::from_ptr((*var).name);
                let value = if (*var).vartype == pg_sys::config_type::PGC_REAL {
                    // GetConfigOption prints reals with %g, six digits; this keeps them all.
                    let real = var.cast::<pg_sys::config_real>();
                    CString::new((*(*real).variable).to_string()).ok()
                } else {
                    // Without the privilege check (no role yet), and copied at once: the
                    // result may point into a buffer the next call reuses.
                    let v = pg_sys::GetConfigOption(name.as_ptr(), true, false);
                    (!v.is_null()).then(|| CStr::from_ptr(v).to_owned())
                };
                if let Some(value) = value {
                    values.insert(name.to_owned(), value);
                }
            }
        }
        ServerSettings(values)
    }

    /// Puts the server's value back over every setting the database or the role changed as the
    /// process connected, but those `kept` (with the same source, so `RESET` goes back to the
    /// server's value as well), gives the session back to the bootstrap superuser, then pins
    /// `PINNED`. Inside the process's first transaction: some settings' checks look up the
    /// catalogs. A value a setting refuses is reported, not raised.
    pub fn restore(&self) -> Restored {
        let changed: Vec<(CString, pg_sys::GucSource::Type)> = all_settings()
            .into_iter()
            // SAFETY: as in `take`.
            .filter_map(|var| unsafe {
                from_database_or_role((*var).source)
                    .then(|| (CStr::from_ptr((*var).name).to_owned(), (*var).source))
            })
            .collect();
        let mut report = Restored::default();
        for (name, source) in changed {
            let text = name.to_string_lossy().into_owned();
            if kept(&text) {
                continue;
            }
            let value = match self.0.get(&name) {
                Some(value) => value.clone(),
                // The process connected as no one in particular, so the database's value of
                // this one set the session user; the server's is the bootstrap superuser.
                None if text == "session_authorization" => match bootstrap_superuser() {
                    Some(name) => name,
                    None => {
                        report.left.push(format!("{text} (no superuser name)"));
                        continue;
                    }
                },
                None => {
                    report
                        .left
                        .push(format!("{text} (the server has no value for it)"));
                    continue;
                }
            };
            // SAFETY: main thread, inside a transaction, before any SQL; GUC_ACTION_SET at the
            // setting's own source level also makes it the value RESET goes back to. Returns 1
            // when the value was set; a refusal is a WARNING (elevel), not an ERROR.
            let set = unsafe {
                pg_sys::set_config_option(
                    name.as_ptr(),
                    value.as_ptr(),
                    pg_sys::GucContext::PGC_SUSET,
                    source,
                    pg_sys::GucAction::GUC_ACTION_SET,
                    true,
                    pg_sys::WARNING as i32,
                    false,
                )
            };
            if set == 1 {
                if text == "session_authorization" {
                    report_session_user();
                }
                report.restored.push(text);
            } else {
                report
                    .left
                    .push(format!("{text} (the server's value was refused)"));
            }
        }
        for (name, value) in PINNED {
            // SAFETY: main thread, inside a transaction; an invalid value raises an ERROR, which
            // ends the process's start.
            unsafe {
                pg_sys::SetConfigOption(
                    name.as_ptr(),
                    value.as_ptr(),
                    pg_sys::GucContext::PGC_SUSET,
                    pg_sys::GucSource::PGC_S_SESSION,
                )
            };
        }
        report
    }
}

/// The bootstrap superuser's name (the role the workers run as).
fn bootstrap_superuser() -> Option<CString> {
    // SAFETY: a syscache lookup inside a transaction; NULL (noerr) when the role is missing.
    unsafe {
        let name =
            pg_sys::GetUserNameFromId(pg_sys::Oid::from(pg_sys::BOOTSTRAP_SUPERUSERID), true);
        (!name.is_null()).then(|| CStr::from_ptr(name).to_owned())
    }
}

/// Corrects the role pg_stat_activity names for this process (`usesysid`), which PostgreSQL
/// noted as the process connected, under the database's `session_authorization`.
fn report_session_user() {
    // SAFETY: this process's own status entry, written as PGSTAT_BEGIN/END_WRITE_ACTIVITY do:
    // readers retry while the change count is odd.
    unsafe {
        let entry = pg_sys::MyBEEntry;
        if entry.is_null() {
            return;
        }
        let count = &raw mut (*entry).st_changecount;
        count.write_volatile(count.read_volatile().wrapping_add(1));
        fence(Ordering::SeqCst);
        (&raw mut (*entry).st_userid).write_volatile(pg_sys::GetSessionUserId());
        fence(Ordering::SeqCst);
        count.write_volatile(count.read_volatile().wrapping_add(1));
    }
}
