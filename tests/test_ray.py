"""subgen on Ray (a local Ray with 2 CPUs, started once for the module): the executors agree,
sharded enumeration is the sequential one, generate and verify write the same rule DB under ray
as under local, a worker killed mid-verification is retried without losing or duplicating a
rule, and training with 2 env actors runs, matches local training and resumes."""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest

from envcore.ops import TASO_GENERATOR_OPS

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.ray

from subgen.pipelines.executors import LocalExecutor, RayExecutor, connect_ray, make_executor  # noqa: E402

TESTS = Path(__file__).resolve().parent
SUBGEN = [sys.executable, "-c", "from subgen.cli import main; main()"]
GEN_OPS = "ewadd,ewmul,scalar_mul,matmul,transpose,relu"    # a small, fast depth-2 search


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    # workers import this module's helpers by value, and the tests/ helpers by path
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(TESTS), os.environ.get("PYTHONPATH")) if p)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    r = connect_ray(run_dir=tmp_path_factory.mktemp("runs"), num_cpus=2)
    assert r.cluster_resources()["CPU"] == 2
    yield r
    r.shutdown()


# ---- helpers that run inside workers ----------------------------------------------------------

def square(x):
    return x * x


def verify_or_die(job, marker: str):
    """verifier.batch's job, except that the worker holding rule 3 dies the first time."""
    from verifier.batch import _work as real   # (the module attribute is patched on the driver)
    marker = Path(marker)
    if job[0] == 3 and not marker.exists():
        marker.write_text(str(os.getpid()))
        os._exit(1)
    return real(job)


def _db_content(path) -> list[tuple]:
    """The rule DB as comparable rows: canonical form, status, axioms, counterexample."""
    con = sqlite3.connect(str(path))
    rows = sorted(con.execute("SELECT key, status, axioms, counterexample IS NULL FROM rules"))
    con.close()
    return rows


def _cli(*args):
    """The CLI in a fresh process; with --executor ray it joins the module's 2-CPU Ray."""
    env = dict(os.environ)
    if ray.is_initialized():
        env["RAY_ADDRESS"] = ray.get_runtime_context().gcs_address
    return subprocess.run(SUBGEN + [str(a) for a in args], capture_output=True, text=True,
                          env=env, timeout=300)


# ---- executors --------------------------------------------------------------------------------

def test_executors_agree_and_stream(ray_cluster):
    items = list(range(23))
    expected = [(i, x * x) for i, x in enumerate(items)]
    with LocalExecutor(2) as ex:
        assert sorted(ex.map_unordered(square, items, chunksize=4)) == expected
    ex = make_executor("ray", 2)
    assert isinstance(ex, RayExecutor) and ex.workers == 2
    got = list(ex.map_unordered(square, items, chunksize=3))
    assert sorted(got) == expected and len(got) == len(items)
    assert ex.map(square, items, chunksize=5) == [x * x for x in items]


def test_missing_ray_is_one_line_and_exit_2(tmp_path):
    hide = "import sys; sys.modules['ray'] = None; from subgen.cli import main; main()"
    db = tmp_path / "r.json"
    db.write_text("[]")
    p = subprocess.run([sys.executable, "-c", hide, "verify", str(db), "--executor", "ray"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == ["error: ray is not installed: pip install 'subgen[ray]'"]


def test_unreachable_cluster_is_one_line_and_exit_2(tmp_path):
    rules = tmp_path / "r.json"
    rules.write_text("[]")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    p = subprocess.run(SUBGEN + ["verify", str(rules), "--executor", "ray", "--ray-address",
                                 "127.0.0.1:9"], capture_output=True, text=True, env=env,
                       timeout=120)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot reach the Ray cluster at")


# ---- generation -------------------------------------------------------------------------------

def test_sharded_generation_on_ray_is_the_serial_one(ray_cluster):
    """The path depth 4 takes (last level evaluated by workers, stages run on fingerprint
    partitions), here on Ray workers, against the serial reference."""
    from subgen.pipelines.generate import Settings, find_candidates
    s = Settings(max_ops=2, ops=TASO_GENERATOR_OPS, verify=False)
    serial, serial_summary = find_candidates(s)
    with make_executor("ray", 2) as ex:
        got, summary = find_candidates(s, executor=ex, sharded=True)
    assert len(serial) > 100
    assert summary.stages == serial_summary.stages
    assert [r.to_dict() for r in got] == [r.to_dict() for r in serial]


def test_generate_ray_equals_local(ray_cluster, tmp_path):
    runs = {}
    for kind, workers in (("local", 1), ("ray", 2)):
        out = tmp_path / f"{kind}.db"
        p = _cli("generate", "--max-ops", 2, "--ops", GEN_OPS, "--out", out, "--workers",
                 workers, "--executor", kind, "--timeout-ms", 20000, "--json")
        assert p.returncode == 0, p.stderr[-2000:]
        runs[kind] = json.loads(p.stdout.strip().splitlines()[-1])
        runs[kind]["db"] = _db_content(out)
    assert runs["ray"]["db"] == runs["local"]["db"]
    assert len(runs["local"]["db"]) == runs["local"]["after_pruning"] > 10
    for k in ("enumerated", "candidates", "after_pruning", "proved", "stages"):
        assert runs["ray"][k] == runs["local"][k], k


# ---- verification -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def candidates_db(tmp_path_factory):
    """Unverified candidate rules of a small search."""
    out = tmp_path_factory.mktemp("cand") / "cand.db"
    p = _cli("generate", "--max-ops", 2, "--ops", GEN_OPS, "--out", out, "--no-verify", "--json")
    assert p.returncode == 0, p.stderr[-2000:]
    return out


def _verify(db, *extra):
    from subgen.cli import main
    try:
        main(["verify", str(db), "--timeout-ms", "20000", "--json", *map(str, extra)])
    except SystemExit as e:
        return e.code
    return 0


def test_verify_ray_equals_local(ray_cluster, candidates_db, tmp_path, capsys):
    local, remote = tmp_path / "local.db", tmp_path / "ray.db"
    shutil.copy(candidates_db, local), shutil.copy(candidates_db, remote)
    assert _verify(local, "--workers", 1) in (0, 1)
    assert _verify(remote, "--workers", 2, "--executor", "ray") in (0, 1)
    rows = _db_content(remote)
    assert rows == _db_content(local)
    assert all(st in ("proved", "refuted", "unknown") for _, st, *_ in rows)


def test_killed_worker_is_retried_and_no_rule_is_lost_or_duplicated(
        ray_cluster, candidates_db, tmp_path, monkeypatch, capsys):
    import verifier.batch
    reference, db = tmp_path / "ref.db", tmp_path / "killed.db"
    shutil.copy(candidates_db, reference), shutil.copy(candidates_db, db)
    before = _db_content(db)
    marker = tmp_path / "died"
    monkeypatch.setattr(verifier.batch, "_work", partial(verify_or_die, marker=str(marker)))
    assert _verify(db, "--workers", 2, "--executor", "ray") in (0, 1)
    assert marker.exists() and int(marker.read_text()) != os.getpid()   # a worker really died
    monkeypatch.undo()
    assert _verify(reference, "--workers", 1) in (0, 1)
    after = _db_content(db)
    assert [k for k, *_ in after] == [k for k, *_ in before]             # same rules, once each
    assert after == _db_content(reference)                               # every result, right
    con = sqlite3.connect(str(db))
    assert con.execute("SELECT COUNT(*) FROM rules WHERE status='candidate'").fetchone()[0] == 0
    con.close()


# ---- rollouts ---------------------------------------------------------------------------------

def test_ray_vector_env_steps_like_local_envs(ray_cluster):
    pytest.importorskip("gymnasium")
    import numpy as np
    from rl_helpers import MODEL, RULES
    from envcore.gym.env import GraphRewriteEnv
    from subgen.pipelines.rollouts import RayVectorEnv
    make = partial(GraphRewriteEnv, model=MODEL, rules=RULES, max_candidates=16, max_steps=6,
                   model_size="tiny")
    local = [make(), make()]
    with RayVectorEnv(make, num_envs=2) as vec:
        obs, infos = vec.reset(seed=[3, 4])
        want = [e.reset(seed=s) for e, s in zip(local, (3, 4))]
        assert [i["cost"] for i in infos] == [i["cost"] for _, i in want]
        rng = np.random.default_rng(0)
        for _ in range(4):
            masks = vec.action_masks()
            assert [m.tolist() for m in masks] == [e.action_masks().tolist() for e in local]
            actions = [int(rng.choice(np.flatnonzero(m[:-1]))) if m[:-1].any() else len(m) - 1
                       for m in masks]
            obs, rew, term, trunc, infos = vec.step(actions)
            for k, (e, a) in enumerate(zip(local, actions)):
                o, r, te, tr, i = e.step(a)
                assert rew[k] == r and term[k] == te and trunc[k] == tr
                assert i["cost"] == infos[k]["cost"]
                assert all(np.array_equal(o[key], obs[k][key]) for key in o)
            if term.any() or trunc.any():
                break
    assert _cpus_free_again(2)


# ---- training ---------------------------------------------------------------------------------

def test_training_with_two_ray_env_actors_runs_matches_local_and_resumes(ray_cluster, tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("torch_geometric")
    pytest.importorskip("gymnasium")
    from rl_helpers import MODEL, write_rule_db
    from agents.rl.run_dir import METRICS
    from subgen.pipelines.train import train
    rules = write_rule_db(tmp_path / "rules.db")
    common = dict(model=MODEL, rules=str(rules), num_steps=16, update_epochs=1, num_envs=2)

    def curve(out):
        import csv
        with open(out / METRICS, newline="") as f:
            return [(r["real_steps"], r["episode_cost"], r["loss"]) for r in csv.DictReader(f)]

    local = train("ppo", tmp_path / "local", 32, executor="local", **common)
    half = train("ppo", tmp_path / "ray", 16, executor="ray", **common)
    assert half["real_steps"] == 16
    resumed = train("ppo", tmp_path / "ray", 32, executor="ray", resume=True, **common)
    assert resumed["real_steps"] == 32 == local["real_steps"]
    # envs in actors step exactly like envs in this process, and --resume continues exactly
    assert curve(tmp_path / "ray") == curve(tmp_path / "local")
    assert _cpus_free_again(2)          # the env actors were ended, their CPUs given back


def _cpus_free_again(cpus: int, wait_s: float = 20.0) -> bool:
    import time
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if ray.available_resources().get("CPU", 0) >= cpus:
            return True
        time.sleep(0.2)
    return False
