//! The functions, operators and types the text of a query names schema-qualified
//! (`schema.f(...)`, `OPERATOR(schema.op)`, `x::schema.t`), read from its raw parse tree:
//! `checked_sql` lets code named so run whoever owns it (see `callees`).

use std::ffi::{c_void, CStr};

use pgrx::pg_sys;
use pgrx::pg_sys::NodeTag::*;
use pgrx::prelude::*;

use crate::callees::list_items;

/// The functions, operators and types a raw parse tree names schema-qualified, as
/// (schema, name).
#[derive(Default)]
pub struct Names {
    pub functions: Vec<(String, String)>,
    pub operators: Vec<(String, String)>,
    /// Types named schema-qualified (`x::schema.t`, a column definition list's types).
    pub types: Vec<(String, String)>,
}

impl Names {
    /// Adds those of the raw parse tree `raw`.
    ///
    /// # Safety
    /// `raw` is a valid raw parse tree (a RawStmt).
    pub unsafe fn add(&mut self, raw: *mut pg_sys::RawStmt) {
        // SAFETY: see the function contract; the walker only reads the tree.
        unsafe { raw_walker((*raw).stmt, (self as *mut Self).cast()) };
    }
}

/// The last two parts of a qualified name (schema.name, or database.schema.name).
///
/// # Safety
/// As `name_parts`.
unsafe fn qualified(list: *mut pg_sys::List) -> Option<(String, String)> {
    // SAFETY: see the function contract.
    match unsafe { name_parts(list) }.as_slice() {
        [.., schema, name] => Some((schema.clone(), name.clone())),
        _ => None,
    }
}

/// The walker over raw parse trees; `context` is a `Names`.
#[pg_guard]
unsafe extern "C-unwind" fn raw_walker(node: *mut pg_sys::Node, context: *mut c_void) -> bool {
    if node.is_null() {
        return false;
    }
    // SAFETY: the walker passes back the context `Names::add` gave, and valid nodes.
    unsafe {
        let names = &mut *context.cast::<Names>();
        match (*node).type_ {
            T_FuncCall => {
                let call = &*node.cast::<pg_sys::FuncCall>();
                names.functions.extend(qualified(call.funcname));
            }
            // OPERATOR(schema.op), whatever the kind of expression it is used in.
            T_A_Expr => {
                let expr = &*node.cast::<pg_sys::A_Expr>();
                names.operators.extend(qualified(expr.name));
            }
            T_TypeName => {
                let type_name = &*node.cast::<pg_sys::TypeName>();
                names.types.extend(qualified(type_name.names));
            }
            _ => {}
        }
        pg_sys::raw_expression_tree_walker(node, Some(raw_walker), context)
    }
}

/// The strings of a name list (String nodes).
///
/// # Safety
/// `list` is a List of String nodes, or null.
unsafe fn name_parts(list: *mut pg_sys::List) -> Vec<String> {
    // SAFETY: see the function contract.
    unsafe {
        list_items::<pg_sys::String>(list)
            .into_iter()
            .filter(|part| {
                !part.is_null() && (**part).type_ == T_String && !(**part).sval.is_null()
            })
            .map(|part| CStr::from_ptr((*part).sval).to_string_lossy().into_owned())
            .collect()
    }
}
