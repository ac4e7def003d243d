# stage_norm: the two commands are `make demo` and `make test` (README.md).
# The PostgreSQL major to build, install and test against (docs/testing.md): 15 is Debian 12's;
# 17 and 18 are built from Debian's source packages into /opt/stage_norm/pgNN by the bootstrap
# (scripts/build-pg.sh). `make test` runs every layer on 15, then `make PG=17 version-test` and
# `make PG=18 version-test`.
PG          ?= 15
PG_VERSIONS  = 17 18
ifeq ($(PG),15)
PG_CONFIG   ?= /usr/lib/postgresql/15/bin/pg_config
else
PG_CONFIG   ?= /opt/stage_norm/pg$(PG)/bin/pg_config
endif
# One target directory for every major: cargo keeps each feature set's build of pgrx apart, and
# the dependencies they share are built once.
PGRX_FLAGS   = --no-default-features --features pg$(PG)
EXT_TARGET   = target
# Read by scripts/with-cluster.sh, scripts/regress.sh and the client tests: the server's programs.
export STAGE_NORM_PG_BIN = $(shell $(PG_CONFIG) --bindir 2>/dev/null)
export STAGE_NORM_PG = $(PG)
PGXS_REGRESS = $(shell $(PG_CONFIG) --pkglibdir)/pgxs/src/test/regress/pg_regress
CLUSTER      = scripts/with-cluster.sh
PGRX_PGDATA ?= /tmp/stage_norm_pgrx_test

.PHONY: upgrade-check version-test versions all deps build install test unit pgrx-test cluster-tests regress client-tests monitoring runbook citus-check package package-test demo bench bench-run fuzz clean

all: build

deps:
	@bash scripts/bootstrap.sh

build: deps
	cargo build --release

# Build in release mode and install into the system PostgreSQL 15.
install: deps
	CARGO_TARGET_DIR=$(EXT_TARGET) cargo pgrx install --release --pg-config $(PG_CONFIG) $(PGRX_FLAGS)
	install -m 644 sql/stage_norm--0.1.0.sql $(shell $(PG_CONFIG) --sharedir)/extension/
	bash scripts/upgrade-script.sh $(shell $(PG_CONFIG) --sharedir)/extension

# Every test layer; non-zero exit on any failure.
test: deps unit pgrx-test install cluster-tests runbook package-test versions
	@echo "make test: all layers passed (PostgreSQL 15, $(PG_VERSIONS))"

# On 17 and 18: the build, pg_regress, the client tests and the package (docs/testing.md).
versions:
	@for v in $(PG_VERSIONS); do $(MAKE) --no-print-directory PG=$$v version-test || exit 1; done

version-test: install cluster-tests package-test upgrade-check
	@echo "make: PostgreSQL $(PG) passed"

# From 15 to $(PG) by dump and restore; on 18 also pg_upgrade from 17 (Debian's 15.20 cannot be
# pg_upgraded to 17.11 or 18.6, with stage_norm or without: scripts/major-upgrade-check.sh).
upgrade-check:
	bash scripts/major-upgrade-check.sh /usr/lib/postgresql/15/bin $(STAGE_NORM_PG_BIN)
	$(if $(filter 18,$(PG)),bash scripts/major-upgrade-check.sh /opt/stage_norm/pg17/bin $(STAGE_NORM_PG_BIN) --pg-upgrade)

# 1. No server: the pure normalizer's unit and property tests; the upgrade script's generator and the
#    check that no routine or view of sql/ is defined twice (docs/development.md).
unit:
	cargo test -p stage_norm_core --release
	cargo test -p stage_norm_sqlgen --release

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
	$(CLUSTER) --conf "shared_preload_libraries = '$(if $(filter 15,$(PG)),pg_cron)'" -- $(MAKE) --no-print-directory regress
	$(CLUSTER) --conf "wal_level = logical" -- $(MAKE) --no-print-directory client-tests $(if $(filter 15,$(PG)),monitoring)

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
	PG_CONFIG=$(PG_CONFIG) PGRX_FLAGS="$(PGRX_FLAGS)" CARGO_TARGET_DIR=$(EXT_TARGET) bash scripts/package.sh

# 6. The package installed with dpkg into the system PostgreSQL 15 (the files of make install set
#    aside meanwhile, then put back), CREATE EXTENSION and a smoke query on a throwaway cluster,
#    the update from 0.1.0, then dpkg -r and every file gone.
package-test: package
	PG_CONFIG=$(PG_CONFIG) bash scripts/package-test.sh $$(ls -t target/postgresql-$(PG)-stage-norm_*.deb | head -1)

# Citus (docs/scaling.md): builds Citus from CITUS_SRC (a source tree you provide; v13.2.2
# checked), runs a coordinator and workers on loopback and the assertion suite. Not part of
# make test: CI cannot install Citus.
citus-check: install
	@test -n "$(CITUS_SRC)" || { echo "make citus-check CITUS_SRC=<citus source dir> (git clone https://github.com/citusdata/citus -b v13.2.2)"; exit 2; }
	STAGE_NORM_PG_BIN=$(STAGE_NORM_PG_BIN) bash scripts/citus-check.sh $(CITUS_SRC)

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
