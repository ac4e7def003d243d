-- Peers for the distributions suite (bench/distributions.sql), loaded with \ir: what a team
-- would write in PL/pgSQL without stage_norm's normalize_stage_distribution, normalize_stages
-- and its trigger on a jsonb column. Written to be reasonably quick (no dynamic SQL, one pass,
-- no per-key function call), not to be slow.
--
-- Stage key, as bench.plpgsql_normalize_stage() in bench/peers.sql: lower(label) without white
-- space and the separators - _ . ; one trailing "round" removed; then the built-in rules of
-- stage_norm for ASCII labels ('preseed', 'seed', series a / b with an optional number,
-- series c..z with an optional number and "+" or "plus"). Anything else is unknown.
--
-- Distribution: a JSON object stage -> weight. Valid when it is a non-empty object, every key is
-- a known stage, every weight a JSON number with 0 <= w <= 1, and the weights (keys naming the
-- same stage merged by adding their weights) sum to 1 within 1e-6 (|sum - 1| <= 0.000001).
-- Exactness: every weight is read as numeric from its JSON text ((value #>> '{}')::numeric; a
-- jsonb number is stored as numeric, so nothing is rounded), and sums are numeric sums, exact.
-- The result has the canonical keys and the (merged) numeric weights; NULL when invalid.

CREATE OR REPLACE FUNCTION bench.plpgsql_normalize_stage_distribution(d jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    lbl text;
    v jsonb;
    k text;
    i int;
    w numeric;
    total numeric := 0;
    n int := 0;
    -- merged weight per canonical stage: pre-seed, seed, series-a, series-b, series-c+
    ws numeric[] := '{NULL,NULL,NULL,NULL,NULL}';
BEGIN
    IF jsonb_typeof(d) <> 'object' THEN
        RETURN NULL;
    END IF;
    FOR lbl, v IN SELECT e.key, e.value FROM jsonb_each(d) e LOOP
        IF jsonb_typeof(v) <> 'number' THEN
            RETURN NULL;
        END IF;
        w := (v #>> '{}')::numeric;
        IF w < 0 OR w > 1 THEN
            RETURN NULL;
        END IF;
        k := regexp_replace(regexp_replace(lower(lbl), '[[:space:]._-]+', '', 'g'), 'round$', '');
        i := CASE
            WHEN k = 'preseed' THEN 1
            WHEN k = 'seed' THEN 2
            WHEN k ~ '^seriesa[0-9]*$' THEN 3
            WHEN k ~ '^seriesb[0-9]*$' THEN 4
            WHEN k ~ '^series[c-z][0-9]*(\+|plus)?$' THEN 5
        END;
        IF i IS NULL THEN
            RETURN NULL;
        END IF;
        ws[i] := coalesce(ws[i], 0) + w;
        total := total + w;
        n := n + 1;
    END LOOP;
    IF n = 0 OR abs(total - 1) > 0.000001 THEN
        RETURN NULL;
    END IF;
    -- Stages absent from the input are NULL here and stripped (every other value is a number).
    RETURN jsonb_strip_nulls(jsonb_build_object('pre-seed', ws[1], 'seed', ws[2], 'series-a', ws[3],
                                                'series-b', ws[4], 'series-c+', ws[5]));
END
$$;

-- Element by element; NULL and unknown elements give NULL; dimensions and lower bounds kept.
CREATE OR REPLACE FUNCTION bench.plpgsql_normalize_stages(a text[]) RETURNS text[]
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    x text;
    k text;
    r text[] := '{}';
    n int;
    d int;
BEGIN
    IF cardinality(a) = 0 THEN
        RETURN a;
    END IF;
    FOREACH x IN ARRAY a LOOP  -- every element, in storage order, whatever the dimensions
        k := regexp_replace(regexp_replace(lower(x), '[[:space:]._-]+', '', 'g'), 'round$', '');
        k := CASE
            WHEN k = 'preseed' THEN 'pre-seed'
            WHEN k = 'seed' THEN 'seed'
            WHEN k ~ '^seriesa[0-9]*$' THEN 'series-a'
            WHEN k ~ '^seriesb[0-9]*$' THEN 'series-b'
            WHEN k ~ '^series[c-z][0-9]*(\+|plus)?$' THEN 'series-c+'
        END;
        r := array_append(r, k);  -- in place (expanded array)
    END LOOP;
    -- Back to the input's shape: regroup from the innermost dimension out, then its lower bounds.
    FOR d IN REVERSE array_ndims(a)..2 LOOP
        n := array_length(a, d);
        SELECT array_agg(r[(j - 1) * n + 1 : j * n] ORDER BY j) INTO r
          FROM generate_series(1, array_length(r, 1) / n) j;
    END LOOP;
    IF array_dims(r) <> array_dims(a) THEN
        r := (array_dims(a) || '=' || r::text)::text[];
    END IF;
    RETURN r;
END
$$;

-- BEFORE INSERT OR UPDATE trigger for a jsonb column "alloc", enforce semantics: an invalid
-- distribution is rejected with the SQLSTATE of stage_norm (23514, check_violation); a valid one
-- is stored normalized. An UPDATE that leaves alloc as it was is not checked again.
CREATE OR REPLACE FUNCTION bench.plpgsql_distribution_trigger() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    n jsonb;
BEGIN
    IF NEW.alloc IS NULL OR (TG_OP = 'UPDATE' AND NEW.alloc IS NOT DISTINCT FROM OLD.alloc) THEN
        RETURN NEW;
    END IF;
    n := bench.plpgsql_normalize_stage_distribution(NEW.alloc);
    IF n IS NULL THEN
        RAISE EXCEPTION 'value % for column "alloc" of table "%" is not a valid stage distribution',
            NEW.alloc, TG_TABLE_NAME
            USING ERRCODE = 'check_violation';
    END IF;
    NEW.alloc := n;
    RETURN NEW;
END
$$;
