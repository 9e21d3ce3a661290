"""tools/ and bench/ scripts import `src` without path hacks: the project is installed in editable mode
(`make setup` runs `pip install -e . --no-deps --no-build-isolation`), so they run from any directory."""
import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.parametrize("script", ["tools/render_fabric.py", "tools/export_genotype.py", "tools/export_onnx.py",
                                    "bench/search_step.py"])
def test_script_runs_from_another_directory(tmp_path, script):
    assert "sys.path" not in (ROOT / script).read_text()
    proc = subprocess.run([sys.executable, str(ROOT / script), "--help"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage:")
