-- Partitioned tables (issue #13, item 6): the bound on client WARNINGs is per statement and
-- attached table, with one summary; messages name the attached table and the partition.
SET client_min_messages = notice;
CREATE TABLE pt (id int, stage text) PARTITION BY RANGE (id);
CREATE TABLE pt_own PARTITION OF pt FOR VALUES FROM (0) TO (100);
-- A partition with its own trigger gives way when the parent is attached.
SELECT stage_norm.attach('pt_own', 'stage');
SELECT stage_norm.attach('pt', 'stage');
DO $$ BEGIN
    FOR i IN 1..19 LOOP
        EXECUTE format('CREATE TABLE pt_%s PARTITION OF pt FOR VALUES FROM (%s) TO (%s)', i, i * 100, i * 100 + 100);
    END LOOP;
END $$;
SELECT count(*) FILTER (WHERE tgname = 'stage_norm_normalize') AS normalize_triggers,
       count(*) FILTER (WHERE tgname = 'stage_norm_normalize' AND tgparentid = 0) AS own,
       count(*) FILTER (WHERE tgname = 'stage_norm_summary') AS summary_triggers
  FROM pg_trigger WHERE tgrelid IN (SELECT relid FROM pg_partition_tree('pt'));
-- 60 unknown values across 20 partitions: 3 WARNINGs and one summary (was 60 and none).
INSERT INTO pt SELECT p * 100 + k, 'mystery' || p FROM generate_series(0, 19) p, generate_series(1, 3) k;
-- Writing into a partition directly: the same bound and a summary.
INSERT INTO pt_3 SELECT 300 + k, 'odd' || k FROM generate_series(10, 15) k;
-- Multi-level: a sub-partitioned partition.
CREATE TABLE pt_sub PARTITION OF pt FOR VALUES FROM (5000) TO (6000) PARTITION BY RANGE (id);
CREATE TABLE pt_sub_1 PARTITION OF pt_sub FOR VALUES FROM (5000) TO (6000);
INSERT INTO pt SELECT 5000 + k, 'deep' FROM generate_series(1, 5) k;
SET stage_norm.mode = 'enforce';
INSERT INTO pt VALUES (5999, 'zzz');
DO $$
DECLARE s text; t text; c text;
BEGIN
    INSERT INTO pt VALUES (150, 'zzz');
EXCEPTION WHEN check_violation THEN
    GET STACKED DIAGNOSTICS s = RETURNED_SQLSTATE, t = TABLE_NAME, c = COLUMN_NAME;
    RAISE NOTICE 'sqlstate=% table=% column=%', s, t, c;
END $$;
RESET stage_norm.mode;
-- ATTACH PARTITION of a table with its own stage_norm trigger to a governed parent: PostgreSQL
-- refuses (the clone would take the same name). detach it first; the clone then governs it.
CREATE TABLE lone (id int, stage text);
SELECT stage_norm.attach('lone', 'stage');
ALTER TABLE pt ATTACH PARTITION lone FOR VALUES FROM (9000) TO (9100);
SELECT stage_norm.detach('lone');
ALTER TABLE pt ATTACH PARTITION lone FOR VALUES FROM (9000) TO (9100);
INSERT INTO lone VALUES (9001, 'Series A') RETURNING *;
SELECT tgname, tgparentid <> 0 AS clone FROM pg_trigger WHERE tgrelid = 'lone'::regclass ORDER BY 1;
-- DETACH PARTITION: PostgreSQL drops the clone; the former partition keeps only its summary
-- trigger, which does nothing without rows counted.
ALTER TABLE pt DETACH PARTITION pt_19;
SELECT tgname, tgparentid <> 0 AS clone FROM pg_trigger WHERE tgrelid = 'pt_19'::regclass ORDER BY 1;
INSERT INTO pt_19 VALUES (1950, 'free text') RETURNING *;
-- detach on the parent removes the triggers attach gave its partitions.
SELECT stage_norm.detach('pt');
SELECT count(*) AS stage_norm_triggers_left FROM pg_trigger
 WHERE tgname LIKE 'stage_norm%' AND tgrelid IN (SELECT relid FROM pg_partition_tree('pt'));
DROP TABLE pt, pt_19;
