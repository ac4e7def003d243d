-- Benchmark helpers: time a statement in the server (no client round trip in the figure).
CREATE SCHEMA IF NOT EXISTS bench;
CREATE TABLE IF NOT EXISTS bench.runs (suite text, variant text, round int, ms float8);
CREATE OR REPLACE FUNCTION bench.time_ms(q text) RETURNS float8 LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz;
BEGIN
    t0 := clock_timestamp();
    EXECUTE q;
    RETURN extract(epoch FROM clock_timestamp() - t0) * 1000;
END $$;
-- Medians per variant and the ratio to a baseline variant.
CREATE OR REPLACE FUNCTION bench.report(p_suite text, p_baseline text)
RETURNS TABLE (variant text, runs bigint, median_ms numeric, ratio numeric) LANGUAGE sql AS $$
    WITH m AS (
        SELECT r.variant, count(*) AS runs,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY r.ms) AS med
          FROM bench.runs r WHERE r.suite = p_suite GROUP BY r.variant)
    SELECT m.variant, m.runs, round(m.med::numeric, 1),
           round((m.med / (SELECT b.med FROM m b WHERE b.variant = p_baseline))::numeric, 3)
      FROM m ORDER BY m.med;
$$;
-- 1,000,000 messy labels. ascii: all ASCII; mixed: about 1 in 10 non-ASCII.
CREATE OR REPLACE FUNCTION bench.messy_labels(n int, with_unicode boolean)
RETURNS SETOF text LANGUAGE sql AS $$
    SELECT CASE WHEN with_unicode AND i % 10 = 0
                THEN (ARRAY['Ｓｅｒｉｅｓ　Ａ', 'Series B–1', 'pre−seed', 'Série C'])[1 + (i / 10) % 4]
                ELSE (ARRAY['Series A ', 'pre_seed', 'seriesB', 'Series D', 'Seed Round', 'seed',
                            'series-a', 'PRE-SEED', 'Series C Plus', 'series b2', 'Series A-2 Round',
                            'series-c+', 'Angel', 'Growth', 'Series E', 'seed round', 'Pre Seed',
                            'SERIES B', 'series a', 'Series C+'])[1 + (i * 7) % 20] END
      FROM generate_series(1, n) i;
$$;
