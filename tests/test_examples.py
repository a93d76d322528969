"""The README's page of Python runs and says what the README says it says."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(not (ROOT / "subgen" / "data" / "rules.db").is_file(), reason="no shipped rule DB")
def test_quickstart_runs_and_optimizes_to_an_equivalent_graph(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "quickstart.py")],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0].startswith("fuse-conv-relu proved")
    assert "equivalent=True" in lines[-1]
    before, after = (float(t) for t in lines[-1].split(" ms")[0].split(" -> "))
    assert after <= before
