-- normalize_stage is a plain C function (src/labels.rs): its raw entry point skips pgrx's
-- per-call guard, a third of a call's cost (docs/benchmarks.md, #31). Same symbol, signature and
-- labels as 0.1.0's: STABLE, as it reads the aliases (through the backend's cache).
CREATE FUNCTION stage_norm.normalize_stage(label text) RETURNS text
STRICT STABLE PARALLEL SAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'normalize_stage_wrapper';
