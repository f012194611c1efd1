# sockbook — see README.md. Every target runs on loopback only.
CARGO ?= cargo
comma := ,
space := $(subst ,, )
GRADE  = $(CARGO) run --quiet --bin grade --

.PHONY: help run tour test grade student hang selfcheck mutants lint doc bench clean gradescope classroom gradescope-check submission

help:
	@echo "make run       chapter 1's demo (the first thing to run)"
	@echo "make progress  every assignment: done, failing, not started (make next, watch, hint)"
	@echo "make tour      every chapter's demo, one after another"
	@echo "make test      lint, every test, and the grader's self-check"
	@echo "make grade     run the graded tests: score table + target/grade/results.json"
	@echo "               (CHAPTERS='ch03 ch04' for only those chapters)"
	@echo "make gradescope target/gradescope/autograder.zip (CHAPTERS='ch02 ch04')"
	@echo "make classroom .github/workflows/classroom.yml for GitHub Classroom (CHAPTERS=...)"
	@echo "make submission DIR=...  a student's checkout graded with this tree's tests (CHAPTERS=...)"
	@echo "make gradescope-check  run the zip end to end as Gradescope would (a few minutes)"
	@echo "make student   write the student edition to target/student/"
	@echo "make hang      write the hang edition to target/hang/ (for the self-check)"
	@echo "make selfcheck reference full marks; student and hang editions score 0"
	@echo "               (CHAPTERS='ch03' for only those chapters)"
	@echo "make mutants   every classic wrong solution in tests/mutants/ loses points"
	@echo "               (CHAPTERS='ch03' for only those chapters)"
	@echo "make lint      cargo fmt --check and clippy -D warnings"
	@echo "make doc       the API docs, with each chapter as its module's page"
	@echo "make book      the chapters as an mdBook website in target/book/ (installs mdBook $(MDBOOK_VERSION) once)"
	@echo "make bench     every chapter's servers against a real peer, alternating rounds,"
	@echo "               median ratios with a range (a few minutes); CHAPTERS='ch07' to pick,"
	@echo "               BENCH='--rounds 9 --scenarios busy' for more"

run:
	@$(CARGO) run --quiet --bin ch01_sockets

tour:
	@for bin in $$(ls src/bin/ch[0-9][0-9]_*.rs | sed 's#src/bin/##; s#\.rs##' | grep -E '^ch[0-9]{2}_[a-z]+$$'); do \
		echo "===== $$bin ====="; \
		$(CARGO) run --quiet --bin $$bin || exit 1; \
	done

# The graded test binaries (tests/chNN_*.rs) run once, in the self-check's
# reference grade (which fails on any of their tests failing, graded or not);
# `grade tests` runs everything else: cargo test's binaries, built once and
# run all at once (they mostly wait, so one after another is slow).
OTHER_TESTS = $(foreach t,$(filter-out ch%,$(basename $(notdir $(wildcard tests/*.rs)))),--test $(t))

test: lint
	$(GRADE) tests -- --quiet --lib --bins $(OTHER_TESTS)
	$(CARGO) test --quiet --doc
	$(GRADE) selfcheck

# make grade CHAPTERS="ch03 ch04" grades only those chapters.
grade:
	$(GRADE) $(foreach c,$(CHAPTERS),--chapter $(c))

# The Gradescope autograder and the GitHub Classroom workflow (see README).
gradescope:
	$(GRADE) gradescope $(foreach c,$(CHAPTERS),--chapter $(c))

classroom:
	$(GRADE) classroom $(foreach c,$(CHAPTERS),--chapter $(c))

# A student's checkout (DIR=...) graded with this tree's tests.
submission:
	@test -n "$(DIR)" || { echo "make submission DIR=path/to/a/student/checkout [CHAPTERS=...]"; exit 2; }
	$(GRADE) submission $(DIR) $(foreach c,$(CHAPTERS),--chapter $(c))

# The zip end to end (reference, student edition, a broken build): slow, so
# not part of `make test`; .ci/run runs it.
gradescope-check:
	$(CARGO) test --quiet --test classroom -- --ignored --test-threads=1

student:
	$(GRADE) edition student target/student
	@echo "hand out target/student/ (it builds; 'make grade' inside it scores it)"

hang:
	$(GRADE) edition hang target/hang

selfcheck:
	$(GRADE) selfcheck $(foreach c,$(CHAPTERS),--chapter $(c))

mutants:
	$(GRADE) mutants $(foreach c,$(CHAPTERS),--chapter $(c))

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --quiet --all-targets -- -D warnings

doc:
	$(CARGO) doc --no-deps
	@echo "open target/doc/sockbook/index.html"

# The tokio peer is a separate crate (bench/tokio-echo, its own workspace):
# the workbook itself builds with libc, nix and errno only.
bench:
	$(CARGO) build --release --bins
	$(CARGO) build --release --manifest-path bench/tokio-echo/Cargo.toml --target-dir target/bench/tokio-build \
		|| echo "bench: the tokio peer did not build; the table will have no ratio column"
	$(CARGO) run --release --quiet --bin bench -- run $(if $(CHAPTERS),--chapters $(subst $(space),$(comma),$(strip $(CHAPTERS)))) $(BENCH)

clean:
	$(CARGO) clean

# The learner's command (src/bin/sockbook): where am I, what next, a hint.
# make hint CH=2 FN=serve_echo for a named assignment.
.PHONY: progress next watch hint book
SOCKBOOK = $(CARGO) run --quiet --bin sockbook --
progress:
	@$(SOCKBOOK) progress
next:
	@$(SOCKBOOK) next
watch:
	@$(SOCKBOOK) watch
hint:
	@$(SOCKBOOK) hint $(CH) $(FN)

# The chapters as a website (mdBook, pinned; installed with cargo on first
# use, which needs the crates.io registry once): target/book/index.html.
MDBOOK_VERSION = 0.4.52
MDBOOK ?= $(shell command -v mdbook 2>/dev/null || echo $(HOME)/.cargo/bin/mdbook)
book:
	@$(MDBOOK) --version 2>/dev/null | grep -q "v$(MDBOOK_VERSION)" || $(CARGO) install mdbook --version $(MDBOOK_VERSION) --locked
	$(MDBOOK) build
	@echo "open target/book/index.html"
