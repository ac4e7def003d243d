-- make demo's reload-and-wait (scripts/demo.sh includes it after an ALTER SYSTEM): psql variables
-- :setting and :expected name the setting and the value the reload brings. pg_reload_conf() only
-- signals; this backend applies the new file before a later command, so wait until it shows.
SELECT pg_reload_conf();
\set ECHO none
SELECT pg_sleep(0.2) \gset
SELECT current_setting(:'setting') <> :'expected' AS pending \gset
\if :pending
SELECT pg_sleep(1) \gset
\endif
\set ECHO queries
