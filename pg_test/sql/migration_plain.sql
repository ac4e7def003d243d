-- docs/migration.md's plain SQL path, verbatim: batched keyset UPDATEs with COMMIT per batch.
SET client_min_messages = notice;
CREATE TABLE portfolio (id bigint PRIMARY KEY, stage text);
SELECT stage_norm.attach('portfolio', 'stage');
ALTER TABLE portfolio DISABLE TRIGGER stage_norm_normalize;   -- rows written before the trigger
INSERT INTO portfolio
SELECT i, (ARRAY['Series A ', 'pre_seed', 'seriesB', 'Series D', 'seed', 'series-a', 'Angel', NULL, 'Growth', 'Seed Round'])[1 + i % 10]
  FROM generate_series(1, 12000) i;
ALTER TABLE portfolio ENABLE TRIGGER stage_norm_normalize;
CREATE TABLE before AS SELECT * FROM portfolio;
CREATE INDEX portfolio_stage_todo ON portfolio (id) WHERE NOT stage_norm.is_canonical_stage(stage);
SET stage_norm.mode = 'enforce';   -- the migration's UPDATEs pass through the trigger and are never rejected
DO $$
DECLARE
    batch_size constant int := 5000;
    pause      constant interval := '50 milliseconds';
    last_id    bigint;          -- the keyset cursor: the last primary key of the previous batch
    batch_max  bigint;
    updated    bigint;
    total      bigint := 0;
BEGIN
    LOOP
        WITH batch AS (          -- the next batch_size rows still to look at, by primary key
            SELECT id FROM portfolio
             WHERE NOT stage_norm.is_canonical_stage(stage)        -- served by portfolio_stage_todo
               AND (last_id IS NULL OR id > last_id)
             ORDER BY id
             LIMIT batch_size
        ), moved AS (
            UPDATE portfolio p
               SET stage = stage_norm.normalize_stage(p.stage)
              FROM batch b
             WHERE p.id = b.id
               AND stage_norm.normalize_stage(p.stage) IS NOT NULL      -- unknown labels stay
               AND p.stage IS DISTINCT FROM stage_norm.normalize_stage(p.stage)
            RETURNING 1
        )
        SELECT (SELECT max(id) FROM batch), (SELECT count(*) FROM moved) INTO batch_max, updated;
        EXIT WHEN batch_max IS NULL;                                 -- nothing left to look at
        last_id := batch_max;
        total := total + updated;
        RAISE NOTICE 'up to id %: % rows updated (% in all)', last_id, updated, total;
        COMMIT;
        PERFORM pg_sleep(extract(epoch FROM pause));
    END LOOP;
    RAISE NOTICE 'done: % rows updated', total;
END $$;
-- Every known variant is canonical; unknown labels and NULLs are as they were; no row lost.
SELECT b.stage AS was, p.stage AS now, count(*)
  FROM before b JOIN portfolio p USING (id) GROUP BY 1, 2 ORDER BY 1 NULLS LAST, 2;
SELECT (SELECT count(*) FROM portfolio) = (SELECT count(*) FROM before) AS same_row_count;
-- A second pass has nothing to do (the batch's WHERE, over the whole table).
WITH moved AS (UPDATE portfolio p SET stage = stage_norm.normalize_stage(p.stage)
                WHERE stage_norm.normalize_stage(p.stage) IS NOT NULL
                  AND p.stage IS DISTINCT FROM stage_norm.normalize_stage(p.stage) RETURNING 1)
SELECT count(*) AS updated_by_a_second_pass FROM moved;
-- The batch query uses the partial index.
EXPLAIN (COSTS OFF) SELECT id FROM portfolio WHERE NOT stage_norm.is_canonical_stage(stage) AND id > 0 ORDER BY id LIMIT 5000;
-- add_check fails while unknown values remain; aliases, a second pass, then it holds.
CALL stage_norm.add_check('portfolio', 'stage', validate => false);
ALTER TABLE portfolio VALIDATE CONSTRAINT stage_stage_canonical;
ALTER TABLE portfolio DROP CONSTRAINT stage_stage_canonical;
SELECT stage_norm.add_alias('Angel', 'pre-seed'), stage_norm.add_alias('Growth', 'series-c+');
DO $$
DECLARE last_id bigint; batch_max bigint;
BEGIN
    LOOP
        WITH batch AS (SELECT id FROM portfolio WHERE NOT stage_norm.is_canonical_stage(stage)
                        AND (last_id IS NULL OR id > last_id) ORDER BY id LIMIT 5000),
             moved AS (UPDATE portfolio p SET stage = stage_norm.normalize_stage(p.stage) FROM batch b
                        WHERE p.id = b.id AND stage_norm.normalize_stage(p.stage) IS NOT NULL
                          AND p.stage IS DISTINCT FROM stage_norm.normalize_stage(p.stage) RETURNING 1)
        SELECT (SELECT max(id) FROM batch) INTO batch_max FROM (SELECT count(*) FROM moved) m;
        EXIT WHEN batch_max IS NULL;
        last_id := batch_max;
        COMMIT;
    END LOOP;
END $$;
SELECT stage, count(*) FROM portfolio GROUP BY 1 ORDER BY 1 NULLS LAST;
RESET stage_norm.mode;
DROP INDEX portfolio_stage_todo;
CALL stage_norm.add_check('portfolio', 'stage');
SELECT stage_norm.remove_alias('Angel'), stage_norm.remove_alias('Growth');
DROP TABLE portfolio, before;
