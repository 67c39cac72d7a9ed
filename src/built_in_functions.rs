//! Built-in functions whose calls run more than their arguments say: they render, cast or
//! read values through code that a type's owner chose, or run SQL from a string.

use pgrx::pg_sys;

/// The functions that render values of any type as json, which call a type's cast to json.
pub const RENDERS_JSON: [u32; 17] = [
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

/// Built-in SQL functions whose body casts an argument of any type to text.
pub const CASTS_TO_TEXT: [u32; 4] = [
    pg_sys::F_TEXTANYCAT,
    pg_sys::F_ANYTEXTCAT,
    pg_sys::F_QUOTE_LITERAL_ANYELEMENT,
    pg_sys::F_QUOTE_NULLABLE_ANYELEMENT,
];

/// Built-in functions that run SQL given as a string or found by name (a table's, a view's):
/// the `*_to_xml*` family, `ts_stat`, `ts_rewrite(tsquery, text)`.
pub const RUNS_SQL: [u32; 18] = [
    2923, // table_to_xml
    pg_sys::F_QUERY_TO_XML,
    pg_sys::F_CURSOR_TO_XML,
    2926, // table_to_xmlschema
    pg_sys::F_QUERY_TO_XMLSCHEMA,
    pg_sys::F_CURSOR_TO_XMLSCHEMA,
    2929, // table_to_xml_and_xmlschema
    pg_sys::F_QUERY_TO_XML_AND_XMLSCHEMA,
    2933, // schema_to_xml
    2934, // schema_to_xmlschema
    2935, // schema_to_xml_and_xmlschema
    2936, // database_to_xml
    2937, // database_to_xmlschema
    2938, // database_to_xml_and_xmlschema
    pg_sys::F_TS_REWRITE_TSQUERY_TEXT,
    pg_sys::F_TS_STAT_TEXT,
    pg_sys::F_TS_STAT_TEXT_TEXT,
    pg_sys::F_TS_REWRITE_TSQUERY_TSQUERY_TSQUERY,
];

/// Built-in functions that read a value of the record type their first argument's type
/// names (`json_populate_record(NULL::t, …)`): through its columns' domains and input functions.
pub const POPULATES: [u32; 4] = [
    pg_sys::F_JSON_POPULATE_RECORD,
    pg_sys::F_JSONB_POPULATE_RECORD,
    pg_sys::F_JSON_POPULATE_RECORDSET,
    pg_sys::F_JSONB_POPULATE_RECORDSET,
];

/// Built-in input functions callable from SQL that read text as a type given by OID as an
/// argument (`record_in('(1)', 'm.t'::regtype, -1)`): which domains' constraints and which
/// input functions they run is known only as they run.
pub const TYPE_FROM_ARGUMENT: [u32; 5] = [
    pg_sys::F_RECORD_IN,
    pg_sys::F_ARRAY_IN,
    pg_sys::F_DOMAIN_IN,
    pg_sys::F_RANGE_IN,
    pg_sys::F_MULTIRANGE_IN,
];
