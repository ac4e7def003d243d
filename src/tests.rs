//! `#[pg_test]`s of the SQL glue (each runs in a transaction that is rolled back).
use pgrx::prelude::*;

#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    fn one(sql: &str) -> Option<String> {
        Spi::get_one::<String>(sql).expect("query failed")
    }

    #[pg_test]
    fn normalize_stage_examples() {
        for (input, want) in [
            ("Series A ", Some("series-a")),
            ("pre_seed", Some("pre-seed")),
            ("seriesB", Some("series-b")),
            ("Series D", Some("series-c+")),
            ("Series A-2 Round", Some("series-a")),
            ("Ｓｅｒｉｅｓ　Ａ", Some("series-a")),
            ("Series C Plus", Some("series-c+")),
            ("", None),
            ("angel", None),
        ] {
            let got = Spi::get_one_with_args::<String>("SELECT stage_norm.normalize_stage($1)", &[input.into()]).unwrap();
            assert_eq!(got.as_deref(), want, "{input:?}");
        }
        assert_eq!(one("SELECT stage_norm.normalize_stage(NULL)"), None);
    }

    /// pgrx's test instance does not preload stage_norm: the cluster-wide views say how to
    /// get them, and everything else works (the trigger counts per session; table_modes shows
    /// no breaker).
    #[pg_test(error = "stage_norm's cluster-wide statistics are not available")]
    fn stats_views_without_preload_say_how_to_enable_them() {
        Spi::run("CREATE TABLE sp (id int PRIMARY KEY, stage text); SELECT stage_norm.attach('sp', 'stage'); INSERT INTO sp VALUES (1, 'Seed')").unwrap();
        assert_eq!(Spi::get_one::<i64>("SELECT normalized FROM stage_norm.session_counters WHERE table_name = 'sp'::regclass").unwrap(), Some(1));
        assert_eq!(Spi::get_one::<bool>("SELECT breaker_tripped FROM stage_norm.table_modes WHERE table_name = 'sp'::regclass").unwrap(), Some(false));
        Spi::run("SELECT * FROM stage_norm.stats").unwrap();
    }

    #[pg_test]
    fn aliases_are_seen_by_the_next_statement() {
        assert_eq!(one("SELECT stage_norm.normalize_stage('Angel Round')"), None);
        assert_eq!(one("SELECT stage_norm.add_alias('angel round', 'pre-seed')").as_deref(), Some("angelround"));
        assert_eq!(one("SELECT stage_norm.normalize_stage('Angel Round')").as_deref(), Some("pre-seed"));
        // The immutable variant ignores aliases.
        assert_eq!(one("SELECT stage_norm.normalize_stage_builtin('Angel Round')"), None);
        assert_eq!(Spi::get_one::<bool>("SELECT stage_norm.remove_alias('ANGEL-ROUND')").unwrap(), Some(true));
        assert_eq!(one("SELECT stage_norm.normalize_stage('Angel Round')"), None);
    }

    #[pg_test]
    fn canonical_helpers() {
        assert_eq!(
            one("SELECT string_agg(s, ',') FROM stage_norm.canonical_stages() s").as_deref(),
            Some("pre-seed,seed,series-a,series-b,series-c+")
        );
        assert_eq!(Spi::get_one::<bool>("SELECT stage_norm.is_canonical_stage('series-c+')").unwrap(), Some(true));
        assert_eq!(Spi::get_one::<bool>("SELECT stage_norm.is_canonical_stage('Series C+')").unwrap(), Some(false));
        assert_eq!(one("SELECT stage_norm.stage_key(' Pre-Seed_Round ')").as_deref(), Some("preseedround"));
    }

    #[pg_test]
    fn volatility_labels_are_honest() {
        let got = one(
            "SELECT string_agg(proname || ':' || provolatile::text || proparallel::text || proisstrict::text, ' ' ORDER BY proname)
               FROM pg_proc WHERE pronamespace = 'stage_norm'::regnamespace
                AND proname IN ('normalize_stage', 'normalize_stage_builtin', 'is_canonical_stage', 'stage_key')",
        );
        assert_eq!(
            got.as_deref(),
            Some("is_canonical_stage:istrue normalize_stage:sstrue normalize_stage_builtin:istrue stage_key:istrue")
        );
    }

    #[pg_test(error = "stage \"Series A\" is not a canonical stage")]
    fn add_alias_rejects_non_canonical_stage() {
        Spi::run("SELECT stage_norm.add_alias('angel', 'Series A')").unwrap();
    }

    #[pg_test]
    fn trigger_rewrites_known_variants() {
        Spi::run("CREATE TABLE t (id int PRIMARY KEY, stage text)").unwrap();
        Spi::run("SELECT stage_norm.attach('t', 'stage')").unwrap();
        Spi::run("SET LOCAL stage_norm.mode = enforce").unwrap();
        Spi::run("INSERT INTO t VALUES (1, 'Series A-2 Round'), (2, NULL)").unwrap();
        assert_eq!(one("SELECT string_agg(coalesce(stage, 'NULL'), ',' ORDER BY id) FROM t").as_deref(), Some("series-a,NULL"));
        assert_eq!(one("SELECT stage_norm.effective_mode('t')").as_deref(), Some("enforce"));
    }

    #[pg_test(error = "value \"Angel\" for column \"stage\" of table \"t\" is not a known investment stage")]
    fn trigger_rejects_unknown_in_enforce() {
        Spi::run("CREATE TABLE t (id int PRIMARY KEY, stage text)").unwrap();
        Spi::run("SELECT stage_norm.attach('t', 'stage')").unwrap();
        Spi::run("SET LOCAL stage_norm.mode = enforce").unwrap();
        Spi::run("INSERT INTO t VALUES (1, 'Angel')").unwrap();
    }
}
