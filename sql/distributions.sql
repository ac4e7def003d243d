-- Stage distributions (jsonb: stage -> weight) and stage arrays (text[], varchar[]); see
-- docs/distributions.md. Plain C functions (src/distributions.rs, src/arrays.rs): they read
-- jsonb and arrays in their binary form. Volatility follows the text functions: the normalizers read aliases (STABLE);
-- the checks follow only the configured set, whose changes re-check the CHECKs that use them
-- (IMMUTABLE, as is_canonical_stage; docs/normalization.md, "Honesty").
CREATE FUNCTION stage_norm.normalize_stage_distribution(dist jsonb) RETURNS jsonb
STABLE STRICT PARALLEL SAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'normalize_stage_distribution';
COMMENT ON FUNCTION stage_norm.normalize_stage_distribution(jsonb) IS
    'The canonical form of a stage distribution (keys normalized and merged, weights exact), or NULL when it is invalid';

CREATE FUNCTION stage_norm.stage_distribution_errors(dist jsonb) RETURNS text[]
STABLE STRICT PARALLEL SAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'stage_distribution_errors';
COMMENT ON FUNCTION stage_norm.stage_distribution_errors(jsonb) IS
    'Every reason why a stage distribution is invalid; empty when normalize_stage_distribution accepts it';

CREATE FUNCTION stage_norm.is_valid_stage_distribution(dist jsonb) RETURNS boolean
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'is_valid_stage_distribution';
COMMENT ON FUNCTION stage_norm.is_valid_stage_distribution(jsonb) IS
    'True exactly for a valid distribution whose keys are all canonical stages (for CHECK constraints)';

CREATE FUNCTION stage_norm.normalize_stages(stages text[]) RETURNS text[]
STABLE STRICT PARALLEL SAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'normalize_stages';
COMMENT ON FUNCTION stage_norm.normalize_stages(text[]) IS
    'normalize_stage element by element: NULL elements stay NULL, unknown elements become NULL; dimensions and bounds kept';

CREATE FUNCTION stage_norm.is_canonical_stage_array(stages text[]) RETURNS boolean
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'is_canonical_stage_array';
COMMENT ON FUNCTION stage_norm.is_canonical_stage_array(text[]) IS
    'True when every non-NULL element is a canonical stage (NULL elements allowed; for CHECK constraints)';
