//! The code an analysed query would run that its text does not name. User-written SQL (a
//! subscription's filter and payload, a backfill's filter) runs as the subscription's owner;
//! a function it calls by name is that owner's choice. PostgreSQL also runs code the text does
//! not name: a type's cast function (`x::t`, or an implicit cast — which a type's owner may
//! create at any time, and which changes how an operator or a function call resolves), a
//! type's input and output functions, a type's cast to json when a json function renders one
//! of its values. Their authors would run code with the owner's rights. PostgreSQL stores a
//! view's or a trigger WHEN clause's analysed tree, so later casts change nothing there;
//! pg_webhook keeps the text and analyses it again at each run, so `checked_sql` checks each
//! analysed tree before it runs.
//!
//! This module only reads trees: what they would call (`Callee`) and which names the text
//! spells out schema-qualified.

use std::ffi::{c_void, CStr};

use pgrx::pg_sys;
use pgrx::pg_sys::NodeTag::*;
use pgrx::prelude::*;

/// Why a function would run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Why {
    /// Called as a function, an aggregate or a window function: by name, unless it came from
    /// a view or policy body or from function-call syntax that PostgreSQL turned into a cast.
    Call,
    /// The function of a cast (written `x::t`, or implicit).
    Cast,
    /// The input or output function of this type, converting a value through text.
    InputOutput(pg_sys::Oid),
    /// This type's cast to json, run when a json function renders one of its values.
    Json(pg_sys::Oid),
}

/// What the trees of one query would call, and the types its json functions render.
#[derive(Default)]
pub struct Callees {
    /// Functions (by OID) and why each would run; functions made by initdb are left out.
    pub calls: Vec<(pg_sys::Oid, Why)>,
    /// Types converted through text: (type, its input function rather than its output one).
    pub through_text: Vec<(pg_sys::Oid, bool)>,
    /// Types of values a json function renders (type, typmod).
    pub rendered: Vec<(pg_sys::Oid, i32)>,
    /// The types of every column the query reads (what an anonymous record may hold).
    pub column_types: Vec<pg_sys::Oid>,
}

/// Whether `oid` was made by initdb (so by the bootstrap superuser, and never changed since).
pub fn built_in(oid: pg_sys::Oid) -> bool {
    oid.to_u32() < pg_sys::FirstNormalObjectId
}

/// The functions that render values of any type as json, which call a type's cast to json.
const RENDERS_JSON: [u32; 17] = [
    pg_sys::F_TO_JSON,
    pg_sys::F_TO_JSONB,
    pg_sys::F_ROW_TO_JSON_RECORD,
    pg_sys::F_ROW_TO_JSON_RECORD_BOOL,
    pg_sys::F_ARRAY_TO_JSON_ANYARRAY,
    pg_sys::F_ARRAY_TO_JSON_ANYARRAY_BOOL,
    pg_sys::F_JSON_AGG,
    pg_sys::F_JSONB_AGG,
    pg_sys::F_JSON_OBJECT_AGG,
    pg_sys::F_JSONB_OBJECT_AGG,
    pg_sys::F_JSON_BUILD_ARRAY_ANY,
    pg_sys::F_JSONB_BUILD_ARRAY_ANY,
    pg_sys::F_JSON_BUILD_OBJECT_ANY,
    pg_sys::F_JSONB_BUILD_OBJECT_ANY,
    pg_sys::F_JSON_BUILD_ARRAY_,
    pg_sys::F_JSON_BUILD_OBJECT_,
    pg_sys::F_JSONB_BUILD_OBJECT_,
];

impl Callees {
    /// Walks the analysed (and rewritten) `query`, subqueries, CTEs and policies included.
    ///
    /// # Safety
    /// `query` is a valid analysed Query.
    pub unsafe fn walk_query(&mut self, query: *mut pg_sys::Query) {
        let context = (self as *mut Self).cast::<c_void>();
        // SAFETY: see the function contract; the walker only reads the tree.
        unsafe { pg_sys::query_tree_walker(query, Some(analysed), context, 0) };
    }

    /// Notes the types of a json function's arguments, `args` (expressions, or an
    /// aggregate's target entries): the values it renders.
    ///
    /// # Safety
    /// `args` is such a List, or null.
    unsafe fn rendered_arguments(&mut self, args: *mut pg_sys::List) {
        if args.is_null() {
            return;
        }
        // SAFETY: see the function contract.
        unsafe {
            for i in 0..(*args).length {
                let mut arg = pg_sys::list_nth(args, i).cast::<pg_sys::Node>();
                if (*arg).type_ == T_TargetEntry {
                    arg = (*arg.cast::<pg_sys::TargetEntry>()).expr.cast();
                }
                let rendered = (pg_sys::exprType(arg), pg_sys::exprTypmod(arg));
                if !self.rendered.contains(&rendered) {
                    self.rendered.push(rendered);
                }
            }
        }
    }

    fn call(&mut self, function: pg_sys::Oid, why: Why) {
        if !built_in(function) && !self.calls.contains(&(function, why)) {
            self.calls.push((function, why));
        }
    }
}

/// The walker over analysed trees; `context` is a `Callees`.
#[pg_guard]
unsafe extern "C-unwind" fn analysed(node: *mut pg_sys::Node, context: *mut c_void) -> bool {
    if node.is_null() {
        return false;
    }
    // SAFETY: the walkers pass back the context `walk_query` gave, and valid nodes of the
    // tags they carry.
    unsafe {
        let found = &mut *context.cast::<Callees>();
        let tag = (*node).type_;
        if tag == T_Query {
            return pg_sys::query_tree_walker(node.cast(), Some(analysed), context, 0);
        }
        let none = (pg_sys::InvalidOid, std::ptr::null_mut());
        let (function, args) = match tag {
            T_FuncExpr => {
                let f = &*node.cast::<pg_sys::FuncExpr>();
                let why = match f.funcformat {
                    pg_sys::CoercionForm::COERCE_EXPLICIT_CAST
                    | pg_sys::CoercionForm::COERCE_IMPLICIT_CAST => Why::Cast,
                    _ => Why::Call,
                };
                found.call(f.funcid, why);
                (f.funcid, f.args)
            }
            T_Aggref => {
                let a = &*node.cast::<pg_sys::Aggref>();
                found.call(a.aggfnoid, Why::Call);
                (a.aggfnoid, a.args)
            }
            T_WindowFunc => {
                let w = &*node.cast::<pg_sys::WindowFunc>();
                found.call(w.winfnoid, Why::Call);
                (w.winfnoid, w.args)
            }
            T_CoerceViaIO => {
                let io = &*node.cast::<pg_sys::CoerceViaIO>();
                found
                    .through_text
                    .push((pg_sys::exprType(io.arg.cast()), false));
                found.through_text.push((io.resulttype, true));
                none
            }
            T_Var => {
                let column = (*node.cast::<pg_sys::Var>()).vartype;
                if !found.column_types.contains(&column) {
                    found.column_types.push(column);
                }
                none
            }
            _ => none,
        };
        if RENDERS_JSON.contains(&function.to_u32()) {
            found.rendered_arguments(args);
        }
        pg_sys::expression_tree_walker(node, Some(analysed), context)
    }
}

/// The (schema, name) pairs of the functions a raw parse tree calls schema-qualified.
///
/// # Safety
/// `raw` is a valid raw parse tree (a RawStmt).
pub unsafe fn qualified_calls(raw: *mut pg_sys::RawStmt) -> Vec<(String, String)> {
    let mut names: Vec<(String, String)> = Vec::new();
    // SAFETY: see the function contract; the walker only reads the tree.
    unsafe {
        raw_walker(
            (*raw).stmt,
            (&mut names as *mut Vec<(String, String)>).cast(),
        )
    };
    names
}

/// The walker over raw parse trees; `context` is a `Vec<(String, String)>`.
#[pg_guard]
unsafe extern "C-unwind" fn raw_walker(node: *mut pg_sys::Node, context: *mut c_void) -> bool {
    if node.is_null() {
        return false;
    }
    // SAFETY: the walker passes back the context `qualified_calls` gave, and valid nodes.
    unsafe {
        if (*node).type_ == T_FuncCall {
            let names = &mut *context.cast::<Vec<(String, String)>>();
            let parts = name_parts((*node.cast::<pg_sys::FuncCall>()).funcname);
            // schema.name or database.schema.name
            if let [.., schema, name] = parts.as_slice() {
                if parts.len() >= 2 {
                    names.push((schema.clone(), name.clone()));
                }
            }
        }
        pg_sys::raw_expression_tree_walker(node, Some(raw_walker), context)
    }
}

/// The strings of a name list (String nodes).
///
/// # Safety
/// `list` is a List of String nodes, or null.
unsafe fn name_parts(list: *mut pg_sys::List) -> Vec<String> {
    let mut parts = Vec::new();
    if list.is_null() {
        return parts;
    }
    // SAFETY: see the function contract.
    unsafe {
        for i in 0..(*list).length {
            let part = pg_sys::list_nth(list, i).cast::<pg_sys::String>();
            if !part.is_null() && (*part).type_ == T_String && !(*part).sval.is_null() {
                parts.push(CStr::from_ptr((*part).sval).to_string_lossy().into_owned());
            }
        }
    }
    parts
}
