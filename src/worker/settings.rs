//! The settings a pg_webhook background process runs with: the server's, never those of the
//! database it serves or of its role.
//!
//! PostgreSQL applies `ALTER DATABASE ... SET` and `ALTER ROLE ... SET` to background workers as
//! they connect, and a database's owner may make most of them. Through them the workers'
//! statements could be planned badly (`enable_nestloop = off` made every outcome recorded read
//! the whole queue: a backlog drained in quadratic time), any caught ERROR could end the process
//! (`exit_on_error`), or the workers could be hijacked (`role`, `search_path`). So the process
//! notes the server's value of every setting before it connects, puts those back over whatever
//! the database and role settings changed, then pins the few values it relies on whatever the
//! server says (`PINNED`).

use std::collections::HashMap;
use std::ffi::{CStr, CString};

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
///   with custom plans (see queue/mod.rs); `force_generic_plan` had every outcome recorded by
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
    /// process connected (with the same source, so `RESET` goes back to the server's value as
    /// well), then pins `PINNED`. Returns the names of the settings put back. A value the
    /// setting refuses is reported as a WARNING, not raised: the server's own value was valid
    /// in this process a moment ago.
    pub fn restore(&self) -> Vec<String> {
        let changed: Vec<(CString, pg_sys::GucSource::Type)> = all_settings()
            .into_iter()
            // SAFETY: as in `take`.
            .filter_map(|var| unsafe {
                from_database_or_role((*var).source)
                    .then(|| (CStr::from_ptr((*var).name).to_owned(), (*var).source))
            })
            .collect();
        let mut restored = Vec::new();
        for (name, source) in changed {
            // A setting a library defined only now has no server value here: it stays.
            let Some(value) = self.0.get(&name) else {
                continue;
            };
            // SAFETY: main thread, outside a transaction, before any SQL; GUC_ACTION_SET at
            // the setting's own source level also makes it the value RESET goes back to.
            unsafe {
                pg_sys::set_config_option(
                    name.as_ptr(),
                    value.as_ptr(),
                    pg_sys::GucContext::PGC_SUSET,
                    source,
                    pg_sys::GucAction::GUC_ACTION_SET,
                    true,
                    pg_sys::WARNING as i32,
                    false,
                );
            }
            restored.push(name.to_string_lossy().into_owned());
        }
        for (name, value) in PINNED {
            // SAFETY: main thread, outside a transaction; none of these settings' checks reads
            // the catalogs for these values, and an invalid one raises an ERROR, ending the
            // process.
            unsafe {
                pg_sys::SetConfigOption(
                    name.as_ptr(),
                    value.as_ptr(),
                    pg_sys::GucContext::PGC_SUSET,
                    pg_sys::GucSource::PGC_S_SESSION,
                )
            };
        }
        restored
    }
}
