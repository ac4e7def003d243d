-- normalize_stage: the contract's examples, rules and unknowns.
-- (U+200B shown by name: psql's character widths differ between releases)
SELECT replace(label, U&'\200B', '<U+200B>') AS label, stage_norm.normalize_stage(label) AS stage, stage_norm.stage_key(label) AS key
  FROM (VALUES ('Series A '), ('pre_seed'), ('seriesB'), ('Series D'), ('Series A-2 Round'),
               ('Ｓｅｒｉｅｓ　Ａ'), ('Series C Plus'), (''), ('Seed Round'), ('PRE-SEED'),
               ('series c+'), ('Series E3'), ('series z plus'), ('Series B–1'), ('pre−seed'),
               (E'Series\u00A0A'), (E'se\u200Bed')) AS t(label);
SELECT stage_norm.normalize_stage(E'\tSeries\u00A0A\r\n\x0B\f') AS control_white_space;
-- No guessing: these are unknown until a DBA adds an alias.
SELECT label, stage_norm.normalize_stage(label) IS NULL AS unknown
  FROM (VALUES ('angel'), ('growth'), ('A'), ('Series A+'), ('seeds'), ('series'), ('round'),
               ('seed round round'), ('Series AA'), ('series а')) AS t(label);
-- NULL in, NULL out.
SELECT stage_norm.normalize_stage(NULL) IS NULL AS null_in_null_out,
       stage_norm.normalize_stage_builtin(NULL) IS NULL AS builtin_too,
       stage_norm.is_canonical_stage(NULL) IS NULL AS is_canonical_null;
-- Canonical stages, in order; is_canonical_stage is exact.
SELECT stage, ordinality FROM stage_norm.canonical_stages() WITH ORDINALITY AS s(stage, ordinality);
SELECT label, stage_norm.is_canonical_stage(label)
  FROM (VALUES ('pre-seed'), ('seed'), ('series-a'), ('series-b'), ('series-c+'),
               ('Seed'), ('series_a'), ('series-c'), (' seed')) AS t(label);
-- Every canonical name normalizes to itself, with both variants.
SELECT bool_and(stage_norm.normalize_stage(s) = s AND stage_norm.normalize_stage_builtin(s) = s)
  FROM stage_norm.canonical_stages() s;
-- Big and odd input never crashes a backend.
SELECT stage_norm.normalize_stage(repeat('a', 10000000)) IS NULL AS ten_mb_unknown;
SELECT stage_norm.normalize_stage('series a' || repeat('1', 10000000)) AS ten_mb_tranche;
SELECT stage_norm.normalize_stage(repeat(' ', 5000000) || 'seed' || repeat(E'\u3000', 1000000)) AS padded;
SELECT count(*) FILTER (WHERE stage_norm.normalize_stage(chr(cp)) IS NOT NULL) AS single_chars_known
  FROM generate_series(1, 1114111, 7) cp WHERE cp NOT BETWEEN 55296 AND 57343;
SELECT stage_norm.normalize_stage(s) IS NULL AS all_planes_unknown, length(stage_norm.stage_key(s)) > 0 AS has_key
  FROM (SELECT string_agg(chr(cp), '') AS s FROM generate_series(1, 1114111, 13) cp
         WHERE cp NOT BETWEEN 55296 AND 57343) AS t;
-- Volatility, strictness and parallel labels are part of the contract.
SELECT p.proname, p.provolatile, p.proisstrict, p.proparallel, p.prosecdef
  FROM pg_proc p WHERE p.pronamespace = 'stage_norm'::regnamespace ORDER BY p.proname;
-- The IMMUTABLE variant can back an index expression; the STABLE one cannot.
CREATE TABLE idx_t (stage text);
CREATE INDEX ON idx_t (stage_norm.normalize_stage_builtin(stage));
CREATE INDEX ON idx_t (stage_norm.normalize_stage(stage));
DROP TABLE idx_t;
