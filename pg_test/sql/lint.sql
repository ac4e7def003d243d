-- plpgsql_check over every PL/pgSQL function and procedure the extension ships: no findings.
CREATE EXTENSION plpgsql_check;
SELECT p.oid::regprocedure AS routine, c.level, c.message
  FROM pg_proc p
  JOIN pg_language l ON l.oid = p.prolang AND l.lanname = 'plpgsql'
  CROSS JOIN LATERAL plpgsql_check_function_tb(p.oid) c
 WHERE p.pronamespace = 'stage_norm'::regnamespace
 ORDER BY 1, 2, 3;
SELECT count(*) > 0 AS routines_checked
  FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang AND l.lanname = 'plpgsql'
 WHERE p.pronamespace = 'stage_norm'::regnamespace;
DROP EXTENSION plpgsql_check;
