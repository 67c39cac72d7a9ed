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

/// The first name in `text` (one expression, see `ensure_one`) that is schema-qualified outside
/// `pg_catalog` — a function, operator, type or relation — as `schema.name`; `None` when it
/// names only what `pg_catalog` has (unqualified names resolve there, with `search_path`
/// pinned). What such a name stands for is another role's to redefine, and it runs as
/// whoever runs the expression.
pub fn outside_catalog(text: &str) -> Option<String> {
    let sql = CString::new(format!("SELECT ({text})")).ok()?;
    let found = in_subtransaction(|| {
        crate::sql::with_settings(&crate::sql::PARSING, || {
            let mut found: Option<String> = None;
            // SAFETY: raw_parser only parses; the tree lives in the current memory context
            // while it is walked, and the walker only reads it.
            unsafe {
                let parsed =
                    pg_sys::raw_parser(sql.as_ptr(), pg_sys::RawParseMode::RAW_PARSE_DEFAULT);
                if !parsed.is_null() {
                    let raw = pg_sys::list_nth(parsed, 0).cast::<pg_sys::RawStmt>();
                    pg_sys::raw_expression_tree_walker(
                        (*raw).stmt,
                        Some(find_qualified),
                        (&mut found as *mut Option<String>).cast(),
                    );
                }
            }
            found
        })
    });
    // Text that does not parse was refused when it was stored; say so rather than pass it.
    found.unwrap_or_else(|e| Some(format!("(text that does not parse: {e})")))
}

/// `raw_expression_tree_walker`'s callback: notes in `context` (an `Option<String>`) the first
/// qualified name outside pg_catalog and stops there.
unsafe extern "C-unwind" fn find_qualified(
    node: *mut pg_sys::Node,
    context: *mut std::ffi::c_void,
) -> bool {
    if node.is_null() {
        return false;
    }
    // SAFETY: the node tag says which struct it is; the context is the walker's Option.
    unsafe {
        let names = match (*node).type_ {
            pg_sys::NodeTag::T_FuncCall => (*node.cast::<pg_sys::FuncCall>()).funcname,
            pg_sys::NodeTag::T_A_Expr => (*node.cast::<pg_sys::A_Expr>()).name,
            pg_sys::NodeTag::T_TypeName => (*node.cast::<pg_sys::TypeName>()).names,
            pg_sys::NodeTag::T_RangeVar => {
                let schema = (*node.cast::<pg_sys::RangeVar>()).schemaname;
                if !schema.is_null() && std::ffi::CStr::from_ptr(schema) != c"pg_catalog" {
                    let name = (*node.cast::<pg_sys::RangeVar>()).relname;
                    let text = |p: *mut std::ffi::c_char| {
                        std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
                    };
                    *context.cast::<Option<String>>() =
                        Some(format!("{}.{}", text(schema), text(name)));
                    return true;
                }
                std::ptr::null_mut()
            }
            _ => std::ptr::null_mut(),
        };
        if let Some(name) = qualified_outside_catalog(names) {
            *context.cast::<Option<String>>() = Some(name);
            return true;
        }
        pg_sys::raw_expression_tree_walker(node, Some(find_qualified), context)
    }
}

/// A name list (of String nodes) with a schema other than pg_catalog, joined with dots.
///
/// # Safety
/// `names` is a List of String nodes, or null.
unsafe fn qualified_outside_catalog(names: *mut pg_sys::List) -> Option<String> {
    // SAFETY: see the function contract.
    unsafe {
        if names.is_null() || (*names).length < 2 {
            return None;
        }
        let parts: Vec<String> = (0..(*names).length)
            .map(|i| {
                let node = pg_sys::list_nth(names, i).cast::<pg_sys::Node>();
                if (*node).type_ == pg_sys::NodeTag::T_String {
                    let value = (*node.cast::<pg_sys::String>()).sval;
                    std::ffi::CStr::from_ptr(value)
                        .to_string_lossy()
                        .into_owned()
                } else {
                    "*".to_string()
                }
            })
            .collect();
        (parts[0] != "pg_catalog").then(|| parts.join("."))
    }
}
