# make demo : set up .venv (and graphviz's `dot` when root), then run the demo on the embedded synthetic data
# make test : set up, then run the test suite (CPU)
# setup installs requirements.txt, then this project in editable mode (`import src` works from tools/, bench/, anywhere)
PY := .venv/bin/python
STAMP := .venv/.installed

.PHONY: setup dot demo test clean

setup: $(STAMP) dot

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	$(PY) -m pip install --disable-pip-version-check -q -e . --no-deps --no-build-isolation
	@touch $(STAMP)

dot:
	@if ! command -v dot >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = "0" ]; then \
	    (apt-get update -qq && apt-get install -y -qq --no-install-recommends graphviz) >/dev/null \
	      || echo "warning: could not install graphviz; renders fall back to .dot files"; \
	  else echo "note: graphviz 'dot' not found and not root; renders fall back to .dot files"; fi; \
	fi

demo: setup
	bash tools/demo.sh

test: setup
	$(PY) -m pytest -q

clean:
	rm -rf output
