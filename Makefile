# make demo : set up .venv (and graphviz's `dot` when root), then run the demo on the embedded synthetic data
# make test : set up, then run the test suite (CPU)
PY := .venv/bin/python
STAMP := .venv/.installed

.PHONY: setup dot demo test clean

setup: $(STAMP) dot

$(STAMP): requirements.txt
	@test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
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
