-- The name of the database this session is connected to.
SELECT pg_catalog.current_database()::text
