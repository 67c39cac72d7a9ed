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
//! This module only reads analysed trees: what they would call (`Callees`); which names the
//! text spells out is `named_in_text`'s.

use std::ffi::c_void;

use pgrx::pg_sys;
use pgrx::pg_sys::NodeTag::*;
use pgrx::prelude::*;

use crate::built_in_functions::{
    CASTS_TO_TEXT, POPULATES, RENDERS_JSON, RUNS_SQL, TYPE_FROM_ARGUMENT,
};
use crate::relation_code::RelationCode;

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
    /// A support function of this range type (`subtype_diff`, `canonical`), which the planner
    /// and range functions call.
    RangeSupport(pg_sys::Oid),
    /// The function of this operator: exempt when the text names the operator.
    Operator(pg_sys::Oid),
    /// The function of operator `.0`, a commutator or negator (or one of theirs) of operator
    /// `.1`, which the query uses: the planner may run it in `.1`'s place (`NOT (a = b)`
    /// becomes `a <> b`; `1 < x` is estimated with `>`'s function). Exempt when the text
    /// names operator `.0`: naming `.1` trusts `.1`'s own function only.
    Swapped(pg_sys::Oid, pg_sys::Oid),
    /// A built-in function that runs SQL from a string (`query_to_xml`, `ts_stat`, …): its
    /// query is analysed only when it runs, so nothing in it can be checked beforehand.
    RunsSql,
    /// A built-in input function reading a type given by OID as an argument (`record_in`, …):
    /// which domains and input functions it runs is known only as it runs.
    TypeFromArgument,
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
    /// Types whose cast to text a built-in SQL function's body calls (`x || 'text'`,
    /// `quote_literal(x)`): that body is analysed only when it is planned or run.
    pub cast_to_text: Vec<pg_sys::Oid>,
    /// The type of every value the query computes (what an anonymous record may hold).
    pub value_types: Vec<pg_sys::Oid>,
    /// Types values are made into, through their domains' constraints: a cast to a domain, a
    /// value read from text, json_populate_record's target, the columns of a column
    /// definition list or of XMLTABLE; with `literals`, the types of the text's constants.
    pub made_into: Vec<pg_sys::Oid>,
    /// Whether the constants the text writes count as values made into their types (a string
    /// literal is read into its type as the text is analysed, see `literals`).
    pub literals: bool,
    /// Shell operators (declared, not yet defined) that the planner may put in the place of
    /// an operator the query uses: (shell, operator used).
    pub shells: Vec<(pg_sys::Oid, pg_sys::Oid)>,
    /// Relations whose owners' code the query runs, and what of it. See `relation_code`.
    pub relations: Vec<(pg_sys::Oid, RelationCode)>,
}

/// How the walkers go through a query: range table entries are shown to `analysed` too.
const WALK: i32 = pg_sys::QTW_EXAMINE_RTES_BEFORE as i32;

/// Whether `oid` was made by initdb (so by the bootstrap superuser, and never changed since).
pub fn built_in(oid: pg_sys::Oid) -> bool {
    oid.to_u32() < pg_sys::FirstNormalObjectId
}

impl Callees {
    /// Walks the analysed (and rewritten) `query`, subqueries, CTEs and policies included.
    ///
    /// # Safety
    /// `query` is a valid analysed Query.
    pub unsafe fn walk_query(&mut self, query: *mut pg_sys::Query) {
        let context = (self as *mut Self).cast::<c_void>();
        // SAFETY: see the function contract; the walker only reads the tree.
        unsafe { pg_sys::query_tree_walker(query, Some(analysed), context, WALK) };
    }

    /// Notes the types of a json function's arguments, `args` (expressions, or an
    /// aggregate's target entries): the values it renders.
    ///
    /// # Safety
    /// `args` is such a List, or null.
    unsafe fn rendered_arguments(&mut self, args: *mut pg_sys::List) {
        // SAFETY: see the function contract.
        unsafe {
            for mut arg in list_items::<pg_sys::Node>(args) {
                if (*arg).type_ == T_TargetEntry {
                    arg = (*arg.cast::<pg_sys::TargetEntry>()).expr.cast();
                }
                // ROW(...) is rendered by its fields.
                if (*arg).type_ == T_RowExpr {
                    self.rendered_arguments((*arg.cast::<pg_sys::RowExpr>()).args);
                    continue;
                }
                let rendered = (pg_sys::exprType(arg), pg_sys::exprTypmod(arg));
                if !self.rendered.contains(&rendered) {
                    self.rendered.push(rendered);
                }
            }
        }
    }

    /// Adds the column types that `query`'s range table declares rather than computes (a
    /// function's column definition list, XMLTABLE's columns, VALUES, CTEs): values of them
    /// may reach an anonymous record.
    ///
    /// # Safety
    /// `query` is a valid analysed Query.
    unsafe fn declared_columns(&mut self, query: *mut pg_sys::Query) {
        // SAFETY: see the function contract.
        unsafe {
            // (list, whether its values are read into those types rather than computed)
            let mut lists = Vec::new();
            for rte in list_items::<pg_sys::Node>((*query).rtable) {
                let rte = &*rte.cast::<pg_sys::RangeTblEntry>();
                lists.push((rte.coltypes, false));
                if !rte.tablefunc.is_null() {
                    lists.push(((*rte.tablefunc).coltypes, true));
                }
                for function in list_items::<pg_sys::Node>(rte.functions) {
                    let function = function.cast::<pg_sys::RangeTblFunction>();
                    lists.push(((*function).funccoltypes, true));
                }
            }
            for (list, read) in lists.into_iter().filter(|(l, _)| !l.is_null()) {
                for i in 0..(*list).length {
                    let declared = pg_sys::list_nth_oid(list, i);
                    // A dropped column's type is InvalidOid (a transition table's, say).
                    if declared == pg_sys::InvalidOid {
                        continue;
                    }
                    push_new(&mut self.value_types, declared);
                    if read {
                        push_new(&mut self.made_into, declared);
                    }
                }
            }
        }
    }

    /// Notes the functions of operator `opno` and of every operator the planner may put in
    /// its place: its commutator and negator, theirs, and so on.
    ///
    /// A shell operator (no function yet) is noted apart: its owner may define it between the
    /// check and the planning. Restriction and join estimators are left out: they take
    /// `internal` arguments, which only C functions (a superuser's) can.
    fn operator(&mut self, opno: pg_sys::Oid) {
        let mut operators = vec![opno];
        let mut i = 0;
        while i < operators.len() {
            // SAFETY: syscache reads of pg_operator rows (InvalidOid when there is none).
            let related = unsafe {
                [
                    pg_sys::get_commutator(operators[i]),
                    pg_sys::get_negator(operators[i]),
                ]
            };
            for other in related {
                if other != pg_sys::InvalidOid && !operators.contains(&other) {
                    operators.push(other);
                }
            }
            i += 1;
        }
        for other in operators {
            let why = if other == opno {
                Why::Operator(opno)
            } else {
                Why::Swapped(other, opno)
            };
            // SAFETY: a syscache read (InvalidOid for a shell).
            let function = unsafe { pg_sys::get_opcode(other) };
            if function == pg_sys::InvalidOid {
                self.shells.push((other, opno));
            } else {
                self.call(function, why);
            }
        }
    }

    fn call(&mut self, function: pg_sys::Oid, why: Why) {
        let why = if RUNS_SQL.contains(&function.to_u32()) {
            Why::RunsSql
        } else if TYPE_FROM_ARGUMENT.contains(&function.to_u32()) {
            Why::TypeFromArgument
        } else {
            why
        };
        let counts = matches!(why, Why::RunsSql | Why::TypeFromArgument) || !built_in(function);
        if counts && !self.calls.contains(&(function, why)) {
            self.calls.push((function, why));
        }
    }
}

fn push_new(types: &mut Vec<pg_sys::Oid>, t: pg_sys::Oid) {
    if !types.contains(&t) {
        types.push(t);
    }
}

/// Whether exprType can read the result type of a node tagged `tag` (it fails on others,
/// such as a TargetEntry or a List).
fn typed(tag: pg_sys::NodeTag) -> bool {
    matches!(
        tag,
        T_Var
            | T_Const
            | T_Param
            | T_Aggref
            | T_WindowFunc
            | T_SubscriptingRef
            | T_FuncExpr
            | T_OpExpr
            | T_NullIfExpr
            | T_SubLink
            | T_FieldSelect
            | T_RelabelType
            | T_CoerceViaIO
            | T_ArrayCoerceExpr
            | T_ConvertRowtypeExpr
            | T_CollateExpr
            | T_CaseExpr
            | T_ArrayExpr
            | T_RowExpr
            | T_CoalesceExpr
            | T_MinMaxExpr
            | T_CoerceToDomain
    )
}

/// The pointers in a List (none for a null one).
///
/// # Safety
/// `list` is a List of pointers to `T`, or null.
pub unsafe fn list_items<T>(list: *mut pg_sys::List) -> Vec<*mut T> {
    if list.is_null() {
        return Vec::new();
    }
    // SAFETY: see the function contract.
    unsafe {
        (0..(*list).length)
            .map(|i| pg_sys::list_nth(list, i).cast::<T>())
            .collect()
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
            found.declared_columns(node.cast());
            return pg_sys::query_tree_walker(node.cast(), Some(analysed), context, WALK);
        }
        if tag == T_RangeTblEntry {
            // A view's RTE became a subquery; its body keeps the view as a relation entry
            // (where its permissions are checked), and the walk goes on into the body.
            let rte = &*node.cast::<pg_sys::RangeTblEntry>();
            if rte.rtekind == pg_sys::RTEKind::RTE_RELATION {
                let kind = |k: u8| rte.relkind == k as std::ffi::c_char;
                let entries = [
                    (kind(pg_sys::RELKIND_VIEW), RelationCode::View),
                    (kind(pg_sys::RELKIND_FOREIGN_TABLE), RelationCode::Foreign),
                    (!rte.securityQuals.is_null(), RelationCode::Policies),
                ];
                for (_, code) in entries.into_iter().filter(|(runs, _)| *runs) {
                    if !found.relations.contains(&(rte.relid, code)) {
                        found.relations.push((rte.relid, code));
                    }
                }
            }
            return false;
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
                push_new(&mut found.made_into, io.resulttype);
                none
            }
            // A literal's type (see `literals`); an implicit one, such as a CASE's ELSE NULL,
            // has no location.
            T_Const if found.literals => {
                let constant = &*node.cast::<pg_sys::Const>();
                if constant.location >= 0 {
                    push_new(&mut found.made_into, constant.consttype);
                }
                none
            }
            T_CoerceToDomain => {
                let coerce = &*node.cast::<pg_sys::CoerceToDomain>();
                push_new(&mut found.made_into, coerce.resulttype);
                none
            }
            T_OpExpr | T_DistinctExpr | T_NullIfExpr => {
                // DistinctExpr and NullIfExpr are OpExprs by layout.
                let op = node.cast::<pg_sys::OpExpr>();
                pg_sys::set_opfuncid(op);
                found.operator((*op).opno);
                // `text || m.mood` is textanycat: its body casts (see CASTS_TO_TEXT).
                ((*op).opfuncid, (*op).args)
            }
            T_ScalarArrayOpExpr => {
                let op = node.cast::<pg_sys::ScalarArrayOpExpr>();
                pg_sys::set_sa_opfuncid(op);
                found.operator((*op).opno);
                none
            }
            T_RowCompareExpr => {
                let compare = &*node.cast::<pg_sys::RowCompareExpr>();
                if !compare.opnos.is_null() {
                    for i in 0..(*compare.opnos).length {
                        found.operator(pg_sys::list_nth_oid(compare.opnos, i));
                    }
                }
                none
            }
            _ => none,
        };
        if typed(tag) {
            push_new(&mut found.value_types, pg_sys::exprType(node));
        }
        if POPULATES.contains(&function.to_u32()) {
            if let Some(&target) = list_items::<pg_sys::Node>(args).first() {
                push_new(&mut found.made_into, pg_sys::exprType(target));
            }
        }
        if RENDERS_JSON.contains(&function.to_u32()) {
            found.rendered_arguments(args);
        }
        if CASTS_TO_TEXT.contains(&function.to_u32()) {
            for arg in list_items::<pg_sys::Node>(args) {
                found.cast_to_text.push(pg_sys::exprType(arg));
            }
        }
        pg_sys::expression_tree_walker(node, Some(analysed), context)
    }
}
