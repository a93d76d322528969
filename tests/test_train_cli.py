"""`subgen train`: run directory contents, exact resume after a kill, one-line errors, and a
trained checkpoint used by `subgen optimize --agent ppo --checkpoint DIR`."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from rl_helpers import MODEL, write_rule_db

from subgen.pipelines import train as driver
CLI = [sys.executable, "-W", "ignore", "-c", "from subgen.cli import main; main()"]


@pytest.fixture(scope="module")
def rules_db(tmp_path_factory):
    return str(write_rule_db(tmp_path_factory.mktemp("rules") / "hand.db"))


def rows(path):
    with open(path / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def run_cli(*args, **kw):
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=300, **kw)


def test_train_writes_checkpoint_metrics_and_curve(tmp_path, rules_db):
    out = tmp_path / "run"
    summary = driver.train("ppo", out, 128, model=MODEL, rules=rules_db, size="tiny")
    assert summary["real_steps"] == 128 and summary["iterations"] == 2
    for name in ("checkpoint.pt", "metrics.csv", "learning_curve.png", "ppo_agent.pt", "run.json"):
        assert (out / name).stat().st_size > 0, name
    table = rows(out)
    assert [int(r["real_steps"]) for r in table] == [64, 128]
    for col in ("wall_s", "episode_cost", "loss", "pg_loss", "v_loss"):
        assert all(r[col] != "" for r in table), col
    assert (out / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"


def test_resume_after_kill_continues_exactly(tmp_path, rules_db):
    """kill -9 at two points: before the first checkpoint (the resume starts over), then after
    two saved iterations (it continues); the result is the uninterrupted run's."""
    steps = "448"                                             # 7 PPO iterations of 64 steps
    ref = tmp_path / "uninterrupted"
    driver.train("ppo", ref, int(steps), model=MODEL, rules=rules_db, size="tiny")
    out = tmp_path / "killed"
    args = ["train", "--agent", "ppo", "--model", MODEL, "--rules", rules_db, "--steps", steps,
            "--out", str(out), "--json"]

    def kill_when(ready, resume):
        proc = subprocess.Popen([*CLI, *args, *(["--resume"] if resume else [])],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 240
        while time.time() < deadline and not ready() and proc.poll() is None:
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()

    kill_when(lambda: (out / "run.json").exists(), resume=False)       # set up, nothing saved
    assert not (out / "checkpoint.pt").exists()
    kill_when(lambda: (out / "metrics.csv").exists() and len(rows(out)) >= 2
              and (out / "checkpoint.pt").exists(), resume=True)
    done_before_kill = len(rows(out))
    assert 2 <= done_before_kill < 7, "the run must really have been interrupted"

    again = run_cli(*args[:-1], "--resume", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout.strip().splitlines()[-1])["real_steps"] == int(steps)
    assert not [p for p in os.listdir(out) if ".tmp" in p]    # a killed writer's are swept
    got, want = rows(out), rows(ref)
    assert [r["iteration"] for r in got] == [str(i) for i in range(1, 8)]
    for a, b in zip(got, want):                # everything but wall time is reproduced
        assert {k: v for k, v in a.items() if k != "wall_s"} == \
               {k: v for k, v in b.items() if k != "wall_s"}


def _main(capsys, *argv):
    from subgen.cli import main
    with pytest.raises(SystemExit) as e:
        main(list(argv))
    return e.value.code, capsys.readouterr().err


def test_bad_input_is_one_line_and_exit_2(tmp_path, rules_db, capsys):
    code, err = _main(capsys, "train", "--agent", "ppo", "--model", "no_such_model",
                      "--rules", rules_db, "--out", str(tmp_path / "x"), "--json")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "no_such_model" in err
    assert not (tmp_path / "x").exists()      # refused before anything was written
    code, err = _main(capsys, "train", "--agent", "ppo", "--model", MODEL,
                      "--rules", str(tmp_path / "missing.db"), "--json")
    assert code == 2 and len(err.strip().splitlines()) == 1

    out = tmp_path / "run"
    driver.train("ppo", out, 64, model=MODEL, rules=rules_db)
    before = (out / "metrics.csv").read_bytes()
    code, err = _main(capsys, "train", "--agent", "ppo", "--model", MODEL, "--rules", rules_db,
                      "--steps", "64", "--out", str(out), "--json")
    assert code == 2 and "--resume" in err                 # never overwrites a run
    code, err = _main(capsys, "train", "--agent", "ppo", "--model", MODEL, "--rules", rules_db,
                      "--steps", "64", "--out", str(out), "--seed", "7", "--resume", "--json")
    assert code == 2 and "seed" in err                     # a different run is refused
    assert (out / "metrics.csv").read_bytes() == before    # nothing lost


def test_optimize_uses_a_trained_checkpoint(tmp_path, rules_db):
    out = tmp_path / "run"
    driver.train("ppo", out, 128, model=MODEL, rules=rules_db)
    res = run_cli("optimize", MODEL, "--model-size", "tiny", "--rules", rules_db, "--agent", "ppo",
                  "--checkpoint", str(out), "--budget", "16", "--json")
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout.strip().splitlines()[-1])
    assert report["equivalent"] is True and report["agent"] == "ppo"
    assert report["cost_after"] <= report["cost_before"] and report["rewrites"] >= 1


class Killed(Exception):
    pass


def test_worldmodel_resumes_after_a_kill_exactly(tmp_path):
    """The world model's checkpoint holds everything (V, the M ensemble, C, their optimisers, the
    replay of real episodes, RNG states), packed against the seeded nets: a run stopped after
    its second checkpoint, with a metrics row written past it, resumes to the uninterrupted
    run's numbers.  With the shipped rule set (15,164 directions) the checkpoint stays small:
    only the rows of the rules the run met are stored."""
    small = dict(model="nasrnn", size="tiny", max_steps=8, random_episodes=2,
                 episodes_per_iter=1, wm_updates=4, dream_updates=3, dream_batch=8, ensemble=2)
    ref = tmp_path / "uninterrupted"
    want = driver.train("worldmodel", ref, 48, **small)
    assert want["iterations"] >= 4
    assert (ref / "checkpoint.pt").stat().st_size < 2_000_000       # 1e8 bytes unpacked
    assert (ref / "worldmodel_agent.pt").stat().st_size < 1_000_000

    out = tmp_path / "killed"

    def kill_after_two(done, total):
        if len(rows(out)) >= 2:
            raise Killed
    with pytest.raises(Killed):
        driver.train("worldmodel", out, 48, on_progress=kill_after_two, **small)
    with open(out / "metrics.csv", "a") as f:                  # a row whose checkpoint was lost
        f.write("99,1,0,0,0,0,0\n")
    got = driver.train("worldmodel", out, 48, resume=True, **small)
    assert got["real_steps"] == want["real_steps"] and got["iterations"] == want["iterations"]
    a, b = rows(out), rows(ref)
    assert [r["iteration"] for r in a] == [r["iteration"] for r in b]
    for x, y in zip(a, b):
        assert {k: v for k, v in x.items() if k != "wall_s"} == \
               {k: v for k, v in y.items() if k != "wall_s"}
