# stage_norm: the two commands are `make demo` and `make test` (README.md).
PG_CONFIG   ?= /usr/lib/postgresql/15/bin/pg_config
PGXS_REGRESS = $(shell $(PG_CONFIG) --pkglibdir)/pgxs/src/test/regress/pg_regress
CLUSTER      = scripts/with-cluster.sh
PGRX_PGDATA ?= /tmp/stage_norm_pgrx_test

.PHONY: all deps build install test unit pgrx-test cluster-tests regress client-tests monitoring runbook citus-check package package-test demo bench bench-run fuzz clean

all: build

deps:
	@bash scripts/bootstrap.sh

build: deps
	cargo build --release

# Build in release mode and install into the system PostgreSQL 15.
install: deps
	cargo pgrx install --release --pg-config $(PG_CONFIG)
	install -m 644 sql/stage_norm--0.1.0.sql $(shell $(PG_CONFIG) --sharedir)/extension/

# Every test layer; non-zero exit on any failure.
test: deps unit pgrx-test install cluster-tests runbook package-test
	@echo "make test: all layers passed"

# 1. Pure normalizer: unit and property tests, no server.
unit:
	cargo test -p stage_norm_core --release

# 2. #[pg_test]s through pgrx's own test instance (run as the postgres user; initdb refuses root).
#    It installs a test build into PostgreSQL, so `install` runs after it.
pgrx-test:
	mkdir -p $(PGRX_PGDATA) && chown postgres: $(PGRX_PGDATA)
	cargo pgrx test pg15 --runas postgres --pgdata $(PGRX_PGDATA)

# 3+4+5. SQL regression suite, on a cluster that does not preload stage_norm (as many users run
#      it: the settings' load-time checks are part of it), then Rust client tests and the
#      monitoring checks on one that does (with-cluster.sh's default: pg_cron and stage_norm,
#      for the statistics and breaker).
cluster-tests:
	$(CLUSTER) --conf "shared_preload_libraries = 'pg_cron'" -- $(MAKE) --no-print-directory regress
	$(CLUSTER) --conf "wal_level = logical" -- $(MAKE) --no-print-directory client-tests monitoring

regress:
	bash scripts/regress.sh $(PGXS_REGRESS)

client-tests:
	cargo test -p stage_norm_client_tests --release --no-fail-fast -- --test-threads=1

# 5. docs/monitoring/: promtool check and test rules, the dashboard's queries against them, and
#    postgres_exporter end to end against the cluster of PG* (stage_norm preloaded).
#    `bash scripts/monitoring-check.sh --static` runs the first three without a cluster.
monitoring:
	bash scripts/monitoring-check.sh

# docs/runbook.md's SQL blocks, extracted from the markdown and run end to end (with each step's
# roll back) on a sample portfolio, on a throwaway cluster of its own.
runbook:
	$(CLUSTER) -- bash scripts/runbook-check.sh

# A Debian package for PostgreSQL 15 (dpkg-deb): target/postgresql-15-stage-norm_<version>-1_<arch>.deb
package: deps
	bash scripts/package.sh

# 6. The package installed with dpkg into the system PostgreSQL 15 (the files of make install set
#    aside meanwhile, then put back), CREATE EXTENSION and a smoke query on a throwaway cluster,
#    the update from 0.1.0, then dpkg -r and every file gone.
package-test: package
	bash scripts/package-test.sh $$(ls -t target/postgresql-15-stage-norm_*.deb | head -1)

# Citus (docs/scaling.md): builds Citus from CITUS_SRC (a source tree you provide; v13.2.2
# checked), runs a coordinator and workers on loopback and the assertion suite. Not part of
# make test: CI cannot install Citus.
citus-check: install
	@test -n "$(CITUS_SRC)" || { echo "make citus-check CITUS_SRC=<citus source dir> (git clone https://github.com/citusdata/citus -b v13.2.2)"; exit 2; }
	bash scripts/citus-check.sh $(CITUS_SRC)

demo: install
	$(CLUSTER) -- bash scripts/demo.sh

# Benchmarks run with PostgreSQL's default durability (what users run); the test cluster turns
# it off for speed. `make bench BENCH_CONF=` measures that fast configuration instead.
BENCH_CONF ?= --conf 'fsync = on' --conf 'full_page_writes = on' --conf 'synchronous_commit = on'
# bench-run: the same without the install (the installed build is measured): the suites, then
# bench/callgrind.sh, the output kept in bench/results/last-run.log, then bench/report.js rewrites
# the generated section of docs/benchmarks.md and draws docs/benchmarks.png (gnuplot).
# BENCH_QUICK=1: fewer rounds and rows, to check the pipeline in a few minutes (bench/all.sh).
bench: install
	$(MAKE) --no-print-directory bench-run

bench-run:
	bash bench/all.sh $(BENCH_CONF)

clean:
	cargo clean
	rm -rf pg_test/results pg_test/regression.diffs pg_test/regression.out
