-- stage_norm 0.1.0 -> 0.2.0, the hand-written part that runs last (docs/development.md, "Where
-- SQL lives"): what needs the new objects, and 0.1.0's data brought into 0.2.0's shape.

-- Aliases extend the rules of the configured set (0.1.0: the built-in rules); the check calls
-- _normalize_stage_rules, new in 0.2.0 (sql/aliases.sql). The line below declares that these
-- ALTERs bring 0.1.0's table to 0.2.0's CREATE TABLE, whose hash it holds: when aliases.sql
-- changes the table again, tools/sqlgen refuses until the ALTERs and the hash follow.
-- sqlgen: table aliases fa7add97e133bccb
ALTER TABLE stage_norm.aliases DROP CONSTRAINT aliases_extend_builtin;
ALTER TABLE stage_norm.aliases ADD CONSTRAINT aliases_extend_builtin
    CHECK (stage_norm._normalize_stage_rules(alias) IS NULL OR stage_norm._normalize_stage_rules(alias) = stage);

-- Triggers attached under 0.1.0 record their column dependencies, and partitions governed
-- through a parent get the summary trigger (src/ddl.rs).
SELECT stage_norm._sync_trigger(t.oid)
  FROM pg_catalog.pg_trigger t
 WHERE t.tgparentid = 0 AND t.tgfoid = 'stage_norm.normalize_trigger()'::pg_catalog.regprocedure;
SELECT stage_norm._summarize_partitions(c.oid::regclass)
  FROM pg_catalog.pg_class c
 WHERE c.relkind = 'p' AND NOT c.relispartition
   AND EXISTS (SELECT FROM pg_catalog.pg_trigger t WHERE t.tgrelid = c.oid AND t.tgname = 'stage_norm_normalize');
