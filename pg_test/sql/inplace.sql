-- Rewrites made inside the row (src/inplace.rs): same-size values, shrinking values that move
-- the columns after them, and what must not be rewritten in place. Every table is checked
-- with amcheck's verify_heapam at the end.
CREATE EXTENSION IF NOT EXISTS amcheck;
SET stage_norm.mode = enforce;

-- Columns of every alignment after the governed one, NULLs among them.
CREATE TABLE ip_wide (id int PRIMARY KEY, stage text, i2 int2, i8 int8, v text, ts timestamptz,
                      n numeric, arr int[], flag bool, tail varchar(10));
SELECT stage_norm.attach('ip_wide', 'stage');
INSERT INTO ip_wide VALUES
  (1, 'Seed Round', 7, 8, 'v', '2026-01-01 00:00+00', 1.5, '{1,2}', true, 't1'),         -- shrinks by 6
  (2, 'PRE_SEED', NULL, 8, NULL, '2026-01-02 00:00+00', NULL, '{3}', NULL, 't2'),         -- same size
  (3, 'Series A-2 Round', 1, NULL, repeat('w', 200), NULL, 2.25, NULL, false, NULL),      -- shrinks, 4-byte-header value after it
  (4, 'seriesB', 2, 9, 'grow', '2026-01-04 00:00+00', 3, '{}', true, 't4'),              -- grows: rebuilt the usual way
  (5, 'series-a', 3, 10, 'x', '2026-01-05 00:00+00', 4, '{5}', false, 't5'),             -- canonical
  (6, NULL, 4, 11, 'y', NULL, NULL, NULL, NULL, NULL);
SELECT id, stage, i2, i8, length(v) AS v_len, ts, n, arr, flag, tail FROM ip_wide ORDER BY id;
UPDATE ip_wide SET stage = 'seed round' WHERE id IN (2, 5);          -- shrink on UPDATE
UPDATE ip_wide SET stage = 'Series C Plus', i2 = i2 + 1 WHERE id = 3;
SELECT id, stage, i2, i8, length(v) AS v_len, ts, n, arr, flag, tail FROM ip_wide ORDER BY id;

-- Two governed columns side by side, both shrinking, and char(n)/varchar(n) columns.
CREATE TABLE ip_two (id int PRIMARY KEY, a text, b text, c char(12), d varchar(20), z text);
SELECT stage_norm.attach('ip_two', 'b', 'a', 'c', 'd');
INSERT INTO ip_two VALUES (1, 'Seed Round', 'Series A Round', 'SERIES B', 'Pre Seed Round', 'end'),
                          (2, 'series  b', NULL, 'seed', 'SEED', 'end2');
SELECT id, a, b, '[' || c::text || ']' AS c, octet_length(c) AS c_bytes, d, z FROM ip_two ORDER BY id;

-- More rewrites in one row than the trigger collects at once (4): applied in batches.
CREATE TABLE ip_six (id int PRIMARY KEY, s1 text, s2 text, s3 text, s4 text, s5 text, s6 text, z int);
SELECT stage_norm.attach('ip_six', 's1', 's2', 's3', 's4', 's5', 's6');
INSERT INTO ip_six VALUES (1, 'Seed Round', 'PRE_SEED', 'seriesB', 'Series A Round', 'SERIES C', 'seed', 42);
SELECT * FROM ip_six;

-- A partition key column is never rewritten in place: PostgreSQL's check that a BEFORE trigger
-- does not move a row to another partition still applies.
CREATE TABLE ip_list (id int, stage text) PARTITION BY LIST (stage);
CREATE TABLE ip_list_seed PARTITION OF ip_list FOR VALUES IN ('seed');
CREATE TABLE ip_list_other PARTITION OF ip_list DEFAULT;
SELECT stage_norm.attach('ip_list', 'stage');
INSERT INTO ip_list VALUES (1, 'seed');
INSERT INTO ip_list VALUES (2, 'Seed');   -- routed to the default partition, then rewritten: refused
INSERT INTO ip_list VALUES (3, 'pre_seed');  -- stays in the default partition
SELECT tableoid::regclass AS part, id, stage FROM ip_list ORDER BY id;
-- A partition keyed on another column: the governed column is rewritten in place.
CREATE TABLE ip_range (id int, stage text, note text) PARTITION BY RANGE (id);
CREATE TABLE ip_range_1 PARTITION OF ip_range FOR VALUES FROM (0) TO (10);
SELECT stage_norm.attach('ip_range', 'stage');
INSERT INTO ip_range VALUES (1, 'Seed Round', 'kept'), (2, 'SEED', 'kept too');
SELECT tableoid::regclass AS part, * FROM ip_range ORDER BY id;

-- Another BEFORE trigger after ours sees the rewritten row.
CREATE TABLE ip_chain (id int PRIMARY KEY, stage text, seen text);
SELECT stage_norm.attach('ip_chain', 'stage');
CREATE FUNCTION ip_chain_seen() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.seen := NEW.stage; RETURN NEW; END $$;
CREATE TRIGGER zz_seen BEFORE INSERT OR UPDATE ON ip_chain FOR EACH ROW EXECUTE FUNCTION ip_chain_seen();
INSERT INTO ip_chain VALUES (1, 'Seed Round', NULL), (2, 'PRE_SEED', NULL);
SELECT * FROM ip_chain ORDER BY id;
-- RETURNING sees the stored row.
INSERT INTO ip_chain VALUES (3, 'Series B Round', NULL) RETURNING *;

-- A foreign table: its slot is a heap slot too, but the in-row rewrite is for heap tables only
-- (an FDW may keep its own pointer to the tuple); the rewrite goes the usual way.
CREATE EXTENSION postgres_fdw;
DO $$ BEGIN
    EXECUTE format('CREATE SERVER ip_loop FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host %L, port %L, dbname %L)',
                   '127.0.0.1', current_setting('port'), current_database());
END $$;
CREATE USER MAPPING FOR CURRENT_USER SERVER ip_loop;
CREATE TABLE ip_remote (id int PRIMARY KEY, stage text, tail text);
CREATE FOREIGN TABLE ip_foreign (id int, stage text, tail text) SERVER ip_loop OPTIONS (table_name 'ip_remote');
SELECT stage_norm.attach('ip_foreign', 'stage');
INSERT INTO ip_foreign VALUES (1, 'Seed', 'same size'), (2, 'Series A Round', 'shrinks'), (3, 'seriesB', 'grows');
UPDATE ip_foreign SET stage = 'PRE_SEED' WHERE id = 1;
SELECT * FROM ip_remote ORDER BY id;
DROP FOREIGN TABLE ip_foreign;
DROP TABLE ip_remote;
DROP EXTENSION postgres_fdw CASCADE;

SELECT c.relname, v.* FROM pg_class c, LATERAL verify_heapam(c.oid) v
 WHERE c.relname IN ('ip_wide', 'ip_two', 'ip_six', 'ip_list_seed', 'ip_list_other', 'ip_range_1', 'ip_chain');
RESET stage_norm.mode;
DROP TABLE ip_wide, ip_two, ip_six, ip_list, ip_range, ip_chain;
DROP FUNCTION ip_chain_seen();
