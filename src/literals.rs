//! Literals PostgreSQL reads while it analyses a query. An untyped literal that takes a
//! composite, array or range type (`'(x)'::m.c`, `NEW.tags = '{x}'`, a literal passed to a
//! parameter of such a type) is read through that type's input function during analysis,
//! which checks the constraints of the domains within the type — before there is any analysed
//! tree to check, and with built-in functions only, which `analysis_guard` lets run (a CHECK
//! calling `query_to_xml` runs any SQL). So `checked_sql` first analyses the text with its
//! string literals made NULL (input functions are strict: nothing is read), and refuses the
//! domains those literals would be read into as it refuses values made into a domain
//! (`looked_up_types::refuse_untrusted_domains`); only then is the text itself analysed.

use std::ffi::{c_void, CStr};

use pgrx::pg_sys;
use pgrx::pg_sys::NodeTag::*;
use pgrx::prelude::*;

use crate::callees::{list_items, Callees};
use crate::named_in_text::Names;

/// Raises an ERROR when a string literal of `text` (with parameters of `types`, reading the
/// transition tables of `trigger`) would be read into a domain that `refuse_untrusted_domains`
/// refuses.
pub fn refuse_untrusted_literal_domains(
    text: &CStr,
    types: &[pg_sys::Oid],
    trigger: Option<&pg_sys::TriggerData>,
) {
    let mut named = Names::default();
    let mut callees = Callees {
        literals: true,
        ..Callees::default()
    };
    // SAFETY: a fresh raw parse of `text`, which nothing else holds; the walkers only set the
    // null flag of string constants; the analysis gets the same text and parameter types
    // SPI_prepare will.
    unsafe {
        let relations = trigger.map_or(std::ptr::null_mut(), |t| transition_tables(t));
        let raws = pg_sys::pg_parse_query(text.as_ptr());
        for raw in list_items::<pg_sys::RawStmt>(raws) {
            named.add(raw);
            null_strings((*raw).stmt, std::ptr::null_mut());
        }
        crate::analysis_guard::analysing(|| {
            for raw in list_items::<pg_sys::RawStmt>(raws) {
                let queries = pg_sys::pg_analyze_and_rewrite_fixedparams(
                    raw,
                    text.as_ptr(),
                    types.as_ptr(),
                    types.len() as i32,
                    relations,
                );
                for query in list_items::<pg_sys::Query>(queries) {
                    callees.walk_query(query);
                }
            }
        });
    }
    // The domains the text names may check its literals as it is analysed (see
    // `analysis_guard`, which stops the functions of other owners there).
    crate::looked_up_types::refuse_untrusted_domains(&callees, &named);
}

/// A query environment holding `trigger`'s transition tables under the names its trigger
/// gave them, as `SPI_register_trigger_data` registers them for SPI's own queries (analysis
/// needs their names and row types only).
///
/// # Safety
/// `trigger` is the data of a trigger call in progress.
unsafe fn transition_tables(trigger: &pg_sys::TriggerData) -> *mut pg_sys::QueryEnvironment {
    // SAFETY: see the function contract; the relations are palloc'd in the current context,
    // as the environment is.
    unsafe {
        let relations = pg_sys::create_queryEnv();
        let named = [
            (trigger.tg_newtable, (*trigger.tg_trigger).tgnewtable),
            (trigger.tg_oldtable, (*trigger.tg_trigger).tgoldtable),
        ];
        for (rows, name) in named {
            if rows.is_null() || name.is_null() {
                continue;
            }
            let relation =
                pg_sys::palloc0(std::mem::size_of::<pg_sys::EphemeralNamedRelationData>())
                    .cast::<pg_sys::EphemeralNamedRelationData>();
            (*relation).md.name = name;
            (*relation).md.reliddesc = (*trigger.tg_relation).rd_id;
            (*relation).md.enrtype = pg_sys::EphemeralNameRelationType::ENR_NAMED_TUPLESTORE;
            (*relation).md.enrtuples = pg_sys::tuplestore_tuple_count(rows) as f64;
            (*relation).reldata = rows.cast();
            pg_sys::register_ENR(relations, relation);
        }
        relations
    }
}

/// Makes every string constant of a raw parse tree NULL; `context` is unused.
///
/// An operand of an operator is also wrapped in `CAST(... AS pg_catalog.unknown)`, which
/// analysis makes into the same untyped constant: PostgreSQL turns a bare NULL operand of
/// `IS [NOT] DISTINCT FROM` (and of `=` under `transform_null_equals`, which `sql::PARSING`
/// pins off anyway) into a test for NULL, where the string literal would have been read into
/// the other operand's type — a type this pass must see.
#[pg_guard]
unsafe extern "C-unwind" fn null_strings(node: *mut pg_sys::Node, context: *mut c_void) -> bool {
    if node.is_null() {
        return false;
    }
    // SAFETY: the walker passes valid raw nodes; an A_Const's union holds a node tag first;
    // an A_Expr's operands are nodes (or null), replaced here by nodes made in the current
    // context, where the tree lives.
    unsafe {
        if (*node).type_ == T_A_Const {
            null_string(node.cast());
            return false;
        }
        if (*node).type_ == T_CommonTableExpr {
            let cte = node.cast::<pg_sys::CommonTableExpr>();
            if !(*cte).search_clause.is_null() || !(*cte).cycle_clause.is_null() {
                refuse_search_or_cycle();
            }
        }
        if (*node).type_ == T_A_Expr {
            let expr = node.cast::<pg_sys::A_Expr>();
            for operand in [&raw mut (*expr).lexpr, &raw mut (*expr).rexpr] {
                if null_string(*operand) {
                    *operand = as_unknown(*operand);
                }
            }
        }
        pg_sys::raw_expression_tree_walker(node, Some(null_strings), context)
    }
}

/// A WITH query's SEARCH or CYCLE clause: PostgreSQL's walkers do not look into it, so neither
/// this pass nor the names the text spells out would see the constants of a CYCLE clause,
/// which analysis reads into their type (a composite's domains checked then).
fn refuse_search_or_cycle() -> ! {
    crate::error::reject(
        pgrx::PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
        "a WITH query's SEARCH or CYCLE clause cannot be used in a filter or payload: PostgreSQL reads the constants of a CYCLE clause while it analyses the text, where they cannot be checked",
        Some("Detect cycles in the recursive query itself (an array of visited keys), or leave the recursion out of the filter."),
    )
}

/// Makes `node` NULL if it is a string constant; whether it was one (a NULL written as such
/// stays as it is, a test for NULL in both passes).
///
/// # Safety
/// `node` is a raw parse node or null.
unsafe fn null_string(node: *mut pg_sys::Node) -> bool {
    // SAFETY: see the function contract; an A_Const's union holds a node tag first.
    unsafe {
        if node.is_null() || (*node).type_ != T_A_Const {
            return false;
        }
        let constant = node.cast::<pg_sys::A_Const>();
        let string = !(*constant).isnull && (*constant).val.node.type_ == T_String;
        if string {
            (*constant).isnull = true;
        }
        string
    }
}

/// `CAST(constant AS pg_catalog.unknown)`, at the constant's place in the text.
///
/// # Safety
/// `constant` is a raw A_Const; the cast is made in the current memory context.
unsafe fn as_unknown(constant: *mut pg_sys::Node) -> *mut pg_sys::Node {
    // SAFETY: see the function contract.
    unsafe {
        let cast =
            pg_sys::palloc0(std::mem::size_of::<pg_sys::TypeCast>()).cast::<pg_sys::TypeCast>();
        (*cast).type_ = T_TypeCast;
        (*cast).arg = constant;
        (*cast).typeName = pg_sys::SystemTypeName(c"unknown".as_ptr().cast_mut());
        (*cast).location = (*constant.cast::<pg_sys::A_Const>()).location;
        cast.cast()
    }
}
