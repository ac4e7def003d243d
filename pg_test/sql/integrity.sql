-- Write-path integrity (issue #13, items 2-4): an earlier BEFORE trigger, foreign-key actions,
-- domains.
SET client_min_messages = notice;

-- 2. A value is "unchanged" on UPDATE only when it equals the old row's value. A BEFORE
-- trigger that fires earlier (its name sorts before stage_norm_) and changes the governed
-- column is seen, even when the statement's SET list does not name that column.
CREATE TABLE e (id int PRIMARY KEY, stage text, note text);
SELECT stage_norm.attach('e', 'stage');
CREATE FUNCTION e_copy() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.stage := NEW.note; RETURN NEW; END $$;
CREATE TRIGGER a_copy BEFORE UPDATE ON e FOR EACH ROW EXECUTE FUNCTION e_copy();
INSERT INTO e VALUES (1, 'seed', 'x'), (2, 'Legacy', 'y');
SET stage_norm.mode = 'enforce';
UPDATE e SET note = 'growth' WHERE id = 1;     -- was stored unchecked before the fix
UPDATE e SET note = 'Series A' WHERE id = 1;   -- rewritten, not stored as written
-- An UPDATE that leaves the value as it was is still not checked: a legacy row can be updated.
DROP TRIGGER a_copy ON e;
UPDATE e SET note = 'z' WHERE id = 2;
UPDATE e SET stage = stage WHERE id = 2;
TABLE e ORDER BY id;
SELECT passed, normalized, rejected, unchanged FROM stage_norm.session_counters WHERE table_name = 'e'::regclass;
RESET stage_norm.mode;
DROP TABLE e;
DROP FUNCTION e_copy();

-- 3. Foreign keys. A value that arrives through a referential action is never rewritten (the
-- rewritten value would reference no row, and PostgreSQL checks a cascaded row only when its
-- key changed); the mode handles it as an unknown value.
CREATE TABLE fk_p (stage text PRIMARY KEY);
CREATE TABLE fk_c (id int PRIMARY KEY, stage text REFERENCES fk_p ON UPDATE CASCADE);
SELECT stage_norm.attach('fk_c', 'stage');
INSERT INTO fk_p VALUES ('seed'), ('series-a');
INSERT INTO fk_c VALUES (1, 'seed'), (2, 'series-a');
UPDATE fk_p SET stage = 'Seed' WHERE stage = 'seed';           -- warn: kept as 'Seed', warned
SELECT c.id, c.stage, EXISTS (SELECT FROM fk_p p WHERE p.stage = c.stage) AS references_a_row FROM fk_c c ORDER BY id;
SET stage_norm.mode = 'enforce';
UPDATE fk_p SET stage = 'SERIES A' WHERE stage = 'series-a';   -- enforce: the parent's UPDATE fails
DO $$
DECLARE s text; t text; c text;
BEGIN
    UPDATE fk_p SET stage = 'SERIES A' WHERE stage = 'series-a';
EXCEPTION WHEN check_violation THEN
    GET STACKED DIAGNOSTICS s = RETURNED_SQLSTATE, t = TABLE_NAME, c = COLUMN_NAME;
    RAISE NOTICE 'sqlstate=% table=% column=%', s, t, c;
END $$;
-- A canonical value cascades as usual.
UPDATE fk_p SET stage = 'series-b' WHERE stage = 'series-a';
-- Ordinary foreign-key checks see the rewritten value: it must reference a row.
INSERT INTO fk_c VALUES (3, 'Series B');                        -- rewritten to series-b: exists
INSERT INTO fk_c VALUES (4, 'SEED');                            -- rewritten to seed: no such parent
SELECT c.id, c.stage, EXISTS (SELECT FROM fk_p p WHERE p.stage = c.stage) AS references_a_row FROM fk_c c ORDER BY id;
-- Governing the parent too keeps both sides canonical: the cascade carries canonical values.
SELECT stage_norm.attach('fk_p', 'stage');
UPDATE fk_p SET stage = 'pre seed' WHERE stage = 'series-b';
SELECT * FROM fk_p ORDER BY 1;
SELECT c.id, c.stage, EXISTS (SELECT FROM fk_p p WHERE p.stage = c.stage) AS references_a_row FROM fk_c c ORDER BY id;
-- ON UPDATE SET DEFAULT: the default is written by the referential action too.
CREATE TABLE fk_d (id int PRIMARY KEY, stage text DEFAULT 'Seed' REFERENCES fk_p ON UPDATE SET DEFAULT);
SELECT stage_norm.attach('fk_d', 'stage');
INSERT INTO fk_d VALUES (1, 'pre-seed');
RESET stage_norm.mode;
UPDATE fk_p SET stage = 'Series C' WHERE stage = 'pre-seed';   -- fk_c cascades series-c+; fk_d gets 'Seed', kept
SELECT 'fk_c' AS t, c.id, c.stage, EXISTS (SELECT FROM fk_p p WHERE p.stage = c.stage) AS references_a_row FROM fk_c c
UNION ALL
SELECT 'fk_d', d.id, d.stage, EXISTS (SELECT FROM fk_p p WHERE p.stage = d.stage) FROM fk_d d ORDER BY 1, 2;
DROP TABLE fk_c, fk_d, fk_p;

-- 3b. Only the rows the referential action itself writes are exempt (#27 item 5). The action's
-- query runs under SECURITY_NOFORCE_RLS, and so does everything its triggers run: an UPDATE of
-- another governed table made inside a child's BEFORE trigger is an ordinary write, normalized
-- as any other (before the fix it was stored as written, with a WARNING about a foreign-key
-- action, and refused under enforce, failing the parent's statement).
CREATE TABLE fp (stage text PRIMARY KEY);
CREATE TABLE fc (id int PRIMARY KEY, stage text REFERENCES fp ON UPDATE CASCADE ON DELETE CASCADE);
CREATE TABLE aud (id int PRIMARY KEY, stage text);
SELECT stage_norm.attach('aud', 'stage');
CREATE FUNCTION fc_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE aud SET stage = 'Series A Round';
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END $$;
CREATE TRIGGER fc_audit BEFORE UPDATE OR DELETE ON fc FOR EACH ROW EXECUTE FUNCTION fc_audit();
INSERT INTO fp VALUES ('seed'), ('series-b');
INSERT INTO fc VALUES (1, 'seed'), (2, 'series-b');
INSERT INTO aud VALUES (1, 'seed');
UPDATE fp SET stage = 'pre-seed' WHERE stage = 'seed';     -- ON UPDATE CASCADE: aud normalized
SELECT * FROM aud;
UPDATE aud SET stage = 'seed';
SET stage_norm.mode = 'enforce';
UPDATE fp SET stage = 'series-a' WHERE stage = 'pre-seed'; -- enforce: no refusal, aud normalized
SELECT * FROM aud;
UPDATE aud SET stage = 'seed';
DELETE FROM fp WHERE stage = 'series-b';                    -- ON DELETE CASCADE: the same
SELECT * FROM aud;
SELECT * FROM fc ORDER BY id;
-- The action's own rows keep their exemption when fc is governed too (its value is the parent's).
SELECT stage_norm.attach('fc', 'stage');
DROP TRIGGER fc_audit ON fc;
RESET stage_norm.mode;
UPDATE fp SET stage = 'Series A' WHERE stage = 'series-a';  -- warn: the action's row kept, warned
SELECT c.id, c.stage, EXISTS (SELECT FROM fp p WHERE p.stage = c.stage) AS references_a_row FROM fc c ORDER BY id;
DROP TABLE fc, aud, fp;
-- Overlapping keys: the action of one key (tenant, ON UPDATE CASCADE) sets tenant only; a value
-- another trigger put into stage meanwhile is not the action's, even though stage belongs to a
-- second key with an action (tenant, stage: ON DELETE SET NULL). It is normalized.
CREATE TABLE q2 (tenant int PRIMARY KEY);
INSERT INTO q2 VALUES (1), (2);
CREATE TABLE q1 (tenant int, stage text, PRIMARY KEY (tenant, stage));
INSERT INTO q1 VALUES (1, 'seed'), (2, 'seed'), (2, 'SERIES A'), (2, 'series-a');
CREATE TABLE gc (id int PRIMARY KEY, tenant int REFERENCES q2 ON UPDATE CASCADE, stage text,
                 FOREIGN KEY (tenant, stage) REFERENCES q1 ON DELETE SET NULL);
SELECT stage_norm.attach('gc', 'stage');
CREATE FUNCTION bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.tenant IS DISTINCT FROM OLD.tenant THEN NEW.stage := 'SERIES A'; END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER a_bump BEFORE UPDATE ON gc FOR EACH ROW EXECUTE FUNCTION bump();
INSERT INTO gc VALUES (1, 1, 'seed');
DELETE FROM q2 WHERE tenant = 2;
UPDATE q2 SET tenant = 2 WHERE tenant = 1;
SELECT * FROM gc;
DROP TABLE gc, q1, q2;
DROP FUNCTION bump();
DROP FUNCTION fc_audit();

-- 4. Domains. A domain's CHECK runs when the value enters the row, before BEFORE triggers:
-- the trigger writes only canonical values the domain accepts. Others are handled as unknown.
CREATE DOMAIN picky AS text CHECK (VALUE IN ('Seed', 'seed', 'a', 'Series A'));
CREATE DOMAIN strict_stage AS text CHECK (stage_norm.is_canonical_stage(VALUE) OR VALUE = 'Series A');
CREATE TABLE dt (id int PRIMARY KEY, p picky, s strict_stage);
SELECT stage_norm.attach('dt', 'p', 's');
INSERT INTO dt VALUES (1, 'Seed', 'Series A');   -- 'seed' accepted by picky; 'series-a' by strict_stage
INSERT INTO dt VALUES (2, 'Series A', NULL);     -- 'series-a' refused by picky: stored as is, warned
SET stage_norm.mode = 'enforce';
INSERT INTO dt VALUES (3, 'Series A', NULL);     -- rejected
RESET stage_norm.mode;
-- Every stored value still satisfies its domain.
SELECT id, p, s, p::text::picky IS NOT NULL AS p_ok, s::text::strict_stage IS NOT DISTINCT FROM s AS s_ok FROM dt ORDER BY id;
-- A domain changed later is seen at once (the trigger resolves its tables again).
ALTER DOMAIN picky DROP CONSTRAINT picky_check;
ALTER DOMAIN picky ADD CONSTRAINT picky_canon CHECK (stage_norm.is_canonical_stage(VALUE) OR VALUE = 'Series A');
INSERT INTO dt VALUES (4, 'Series A', NULL);     -- now rewritten
SELECT id, p FROM dt WHERE id = 4;
DROP TABLE dt;
DROP DOMAIN picky, strict_stage;
