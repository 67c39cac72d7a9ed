-- Inheritance links involving live subscriptions' tables that a subscription cannot follow: a
-- subscribed table that is a partition or inheritance child (a statement through its parent
-- would not fire its triggers), or a subscribed table with an inheritance child that is not a
-- partition (a statement naming the child would not be captured). With the xmin of the link:
-- one the current transaction made is refused; older ones (before 0.3.0) are only warned about.
SELECT s.name, s.target::pg_catalog.regclass::pg_catalog.text,
       i.inhrelid::pg_catalog.regclass::pg_catalog.text,
       i.inhparent::pg_catalog.regclass::pg_catalog.text,
       i.xmin::pg_catalog.text,
       i.inhrelid OPERATOR(pg_catalog.=) s.target::pg_catalog.oid
  FROM webhook._subscriptions s
  JOIN pg_catalog.pg_inherits i
    ON i.inhrelid OPERATOR(pg_catalog.=) s.target::pg_catalog.oid
    OR i.inhparent OPERATOR(pg_catalog.=) s.target::pg_catalog.oid
  JOIN pg_catalog.pg_class child ON child.oid OPERATOR(pg_catalog.=) i.inhrelid
 WHERE s.status OPERATOR(pg_catalog.<>) 'unsubscribed'
   AND (i.inhrelid OPERATOR(pg_catalog.=) s.target::pg_catalog.oid OR NOT child.relispartition)
