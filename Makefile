# sockbook — see README.md. Every target runs on loopback only.
CARGO ?= cargo
comma := ,
space := $(subst ,, )
GRADE  = $(CARGO) run --quiet --bin grade --

.PHONY: help run tour test grade student hang selfcheck lint doc bench clean

help:
	@echo "make run       chapter 1's demo (the first thing to run)"
	@echo "make tour      every chapter's demo, one after another"
	@echo "make test      lint, every test, and the grader's self-check"
	@echo "make grade     run the graded tests: score table + target/grade/results.json"
	@echo "               (CHAPTERS='ch03 ch04' for only those chapters)"
	@echo "make student   write the student edition to target/student/"
	@echo "make hang      write the hang edition to target/hang/ (for the self-check)"
	@echo "make selfcheck reference full marks; student and hang editions score 0"
	@echo "make lint      cargo fmt --check and clippy -D warnings"
	@echo "make doc       the API docs, with each chapter as its module's page"
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

test: lint
	$(CARGO) test --quiet
	$(GRADE) selfcheck

# make grade CHAPTERS="ch03 ch04" grades only those chapters.
grade:
	$(GRADE) $(foreach c,$(CHAPTERS),--chapter $(c))

student:
	$(GRADE) edition student target/student
	@echo "hand out target/student/ (it builds; 'make grade' inside it scores it)"

hang:
	$(GRADE) edition hang target/hang

selfcheck:
	$(GRADE) selfcheck

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
