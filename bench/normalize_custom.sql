-- Issue #14: bench/normalize.sql under a 7-stage custom set (pre-seed, seed, series-a, series-b,
-- series-c, series-d, growth).
\set set custom
\ir normalize.sql
