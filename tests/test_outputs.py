"""Output locations: a read-only or full filesystem, or a missing folder, is one line and a
documented exit code; no temporary file is left; files written before stay intact."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from subgen.paths import DEFAULT_RULES

SUBGEN = [sys.executable, "-c", "from subgen.cli import main; main()"]
DB = str(DEFAULT_RULES)


def _mount(path: Path, *options: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(options), "tmpfs", str(path)],
                          capture_output=True)
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")


@pytest.fixture
def read_only(tmp_path):
    where = tmp_path / "ro"
    _mount(where, "ro", "size=1m")
    yield where
    subprocess.run(["umount", str(where)])


@pytest.fixture
def full(tmp_path):
    where = tmp_path / "full"
    _mount(where, "size=64k")
    (where / "keep.txt").write_text("a file of the user's own\n")
    try:                                 # fill it: every later write fails
        with open(where / "filler", "wb") as f:
            while True:
                f.write(b"\0" * 4096)
                f.flush()
    except OSError:
        pass
    yield where
    subprocess.run(["umount", str(where)])


def _run(*args, timeout=300):
    return subprocess.run([*SUBGEN, *args], capture_output=True, text=True, timeout=timeout)


def _one_line(done, code):
    assert done.returncode == code, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("args", [
    ["generate", "--max-ops", "2", "--out", "{d}/r.db"],
    ["optimize", "toy", "--model-size", "tiny", "--out", "{d}/x.onnx"],
    ["rules", "export", DB, "--format", "json", "--out", "{d}/x.json"],
    ["train", "--agent", "ppo", "--model", "nasrnn", "--out", "{d}/run", "--steps", "8"],
], ids=["generate", "optimize", "export", "train"])
def test_a_read_only_location_is_one_line_and_exit_2(read_only, args):
    done = _run(*[a.format(d=read_only) for a in args])
    _one_line(done, 2)
    assert "Read-only" in done.stderr


def test_verify_report_to_a_read_only_location_fails_before_the_proofs(read_only):
    pb = Path(__file__).resolve().parents[2] / "shared" / "anchors" / "taso" / "graph_subst.pb"
    if not pb.exists():
        pytest.skip("no TASO rule file")
    done = _run("verify", str(pb), "--report", str(read_only / "r.json"))
    _one_line(done, 2)


TASO_PB = Path(__file__).resolve().parents[2] / "shared" / "anchors" / "taso" / "graph_subst.pb"


@pytest.mark.parametrize("args,code", [
    # the DB cannot even be begun: an unusable output, before any work
    (["generate", "--max-ops", "2", "--out", "{d}/r.db"], 2),
    # exit 1: the work was done, writing it failed
    (["optimize", "toy", "--model-size", "tiny", "--agent", "greedy", "--out", "{d}/x.onnx"], 1),
    (["rules", "export", DB, "--format", "json", "--out", "{d}/x.json"], 1),
    (["verify", str(TASO_PB), "--report", "{d}/report.json"], 1),
    (["train", "--agent", "ppo", "--model", "nasrnn", "--out", "{d}/run", "--steps", "8"], 1),
    (["train", "--agent", "worldmodel", "--model", "nasrnn", "--out", "{d}/run", "--steps", "8"],
     1),
], ids=["generate", "optimize", "export", "verify-report", "train-ppo", "train-worldmodel"])
def test_a_full_disk_is_one_line_leaves_no_temporary_file_and_keeps_earlier_files(full, args,
                                                                                   code):
    if "verify" in args and not TASO_PB.exists():
        pytest.skip("no TASO rule file")
    before = sorted(os.listdir(full))
    done = _run(*[a.format(d=full) for a in args])
    _one_line(done, code)
    assert "full" in done.stderr or "space" in done.stderr, done.stderr
    assert sorted(os.listdir(full)) == before
    assert (full / "keep.txt").read_text() == "a file of the user's own\n"


def test_a_missing_output_folder_is_made(tmp_path):
    out = tmp_path / "new" / "sub" / "x.json"
    done = _run("rules", "export", DB, "--format", "json", "--out", str(out))
    assert done.returncode == 0 and out.exists()
