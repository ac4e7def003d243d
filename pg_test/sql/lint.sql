-- plpgsql_check over every PL/pgSQL function and procedure the extension ships: no findings.
CREATE EXTENSION plpgsql_check;
SELECT p.oid::regprocedure AS routine, c.level, c.message
  FROM pg_proc p
  JOIN pg_language l ON l.oid = p.prolang AND l.lanname = 'plpgsql'
  -- a trigger function is checked against the table it is attached to (_citus_guard: its row
  -- path reads NEW.tbl of table_mode_settings)
  CROSS JOIN LATERAL plpgsql_check_function_tb(p.oid, CASE WHEN p.prorettype = 'trigger'::regtype
                                                           THEN 'stage_norm.table_mode_settings'::regclass ELSE 0 END) c
 WHERE p.pronamespace = 'stage_norm'::regnamespace
   -- the Citus parts refer to Citus's catalogs and functions: scripts/citus-check.sh checks them
   AND p.prosrc NOT LIKE '%-- lint: needs Citus%'
 ORDER BY 1, 2, 3;
SELECT count(*) FILTER (WHERE p.prosrc LIKE '%-- lint: needs Citus%') AS needs_citus,
       count(*) > 0 AS routines_checked
  FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang AND l.lanname = 'plpgsql'
 WHERE p.pronamespace = 'stage_norm'::regnamespace;
DROP EXTENSION plpgsql_check;
