//! User-written SQL that must be one expression: a subscription's filter and payload, a
//! backfill's filter. pg_webhook puts such text inside queries of its own, so text that closed
//! the expression early and went on (`true) UNION ALL SELECT …`, `true) FROM … WHERE (true`)
//! would change those queries' shape — the columns they return, which the capture and the
//! backfill read as raw values of known types. Each is parsed on its own, alone in a SELECT
//! list, and must come back as exactly that.

use std::ffi::CString;

use pgrx::pg_sys;

use crate::error::{in_subtransaction, invalid};

/// Refuses `text` unless it parses as one SQL expression; `what` names it in the error, `like`
/// gives an example of one.
pub fn ensure_one(what: &str, text: &str, like: &str) {
    // On one line, as pg_webhook's own queries put it: a line comment at its end would take
    // what follows there too, so it is refused here.
    let sql = CString::new(format!("SELECT ({text})"))
        .unwrap_or_else(|_| invalid(format!("{what} contains a NUL character")));
    // SAFETY: raw_parser only parses (no catalog access); its ERROR is caught by the
    // subtransaction, and the tree lives in the current memory context while it is read.
    // Parsed as it is parsed where it runs (`sql::PARSING`), whatever this session has set.
    let shape = in_subtransaction(|| {
        crate::sql::with_settings(&crate::sql::PARSING, || unsafe {
            let parsed = pg_sys::raw_parser(sql.as_ptr(), pg_sys::RawParseMode::RAW_PARSE_DEFAULT);
            one_expression(parsed)
        })
    });
    match shape {
        Ok(true) => {}
        Ok(false) => invalid(format!(
            "{what} must be one expression, such as {like}, not a query or more than one expression"
        )),
        Err(e) => invalid(format!("{what} is not a valid expression: {e}")),
    }
}

/// Whether `parsed` is one plain `SELECT (expression)`: no other statement, no set operation,
/// no clause, one unnamed target.
///
/// # Safety
/// `parsed` is a raw parse tree (a list of RawStmt) or null.
unsafe fn one_expression(parsed: *mut pg_sys::List) -> bool {
    // SAFETY: see the function contract.
    unsafe {
        if parsed.is_null() || (*parsed).length != 1 {
            return false;
        }
        let raw = pg_sys::list_nth(parsed, 0).cast::<pg_sys::RawStmt>();
        let stmt = (*raw).stmt;
        if (*stmt).type_ != pg_sys::NodeTag::T_SelectStmt {
            return false;
        }
        let s = &*stmt.cast::<pg_sys::SelectStmt>();
        let plain = s.op == pg_sys::SetOperation::SETOP_NONE
            && s.distinctClause.is_null()
            && s.intoClause.is_null()
            && s.fromClause.is_null()
            && s.whereClause.is_null()
            && s.groupClause.is_null()
            && !s.groupDistinct
            && s.havingClause.is_null()
            && s.windowClause.is_null()
            && s.valuesLists.is_null()
            && s.sortClause.is_null()
            && s.limitOffset.is_null()
            && s.limitCount.is_null()
            && s.lockingClause.is_null()
            && s.withClause.is_null();
        if !plain || s.targetList.is_null() || (*s.targetList).length != 1 {
            return false;
        }
        let target = pg_sys::list_nth(s.targetList, 0).cast::<pg_sys::ResTarget>();
        (*target).name.is_null()
    }
}
