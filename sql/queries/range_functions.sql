-- The support functions (subtype_diff, canonical) of the range types among $1, and of the
-- ranges of the multirange types among them: (function, range type). The planner and range
-- functions call them as a query runs. See src/looked_up_types.rs.
SELECT f.function, r.rngtypid
  FROM pg_catalog.pg_range AS r
 CROSS JOIN LATERAL (VALUES (r.rngsubdiff::pg_catalog.oid), (r.rngcanonical::pg_catalog.oid))
       AS f(function)
 WHERE (r.rngtypid OPERATOR(pg_catalog.=) ANY ($1)
        OR r.rngmultitypid OPERATOR(pg_catalog.=) ANY ($1))
   AND f.function OPERATOR(pg_catalog.<>) 0
