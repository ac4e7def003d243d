-- Installs the extension into the fresh regression database.
CREATE EXTENSION stage_norm;
SELECT extname, extversion, nspname AS schema, extrelocatable
  FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
 WHERE extname = 'stage_norm';
