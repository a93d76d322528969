"""Importing the packages: `import envcore` / `import subgen` register the Gym id (Gymnasium's
convention) without loading the env, and work where gymnasium is not installed; `subgen train`
finds its algorithms through the agent registry."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ENV_ID = "subgen/GraphRewrite-v0"


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=Path(__file__).parent)   # the tests' helpers import


@pytest.mark.parametrize("package", ["envcore", "subgen"])
def test_importing_the_package_registers_the_env_without_loading_it(package):
    pytest.importorskip("gymnasium")
    p = _python(f"import sys, {package}, gymnasium as gym\n"
                f"print({ENV_ID!r} in gym.registry, 'envcore.gym.env' in sys.modules)")
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["True", "False"]


def test_the_registered_id_makes_a_working_env():
    pytest.importorskip("gymnasium")
    p = _python("import envcore, gymnasium as gym\n"
                "from rules_fixture import hand_rules\n"
                f"env = gym.make({ENV_ID!r}, model='toy', model_size='tiny', rules=hand_rules())\n"
                "obs, info = env.reset(seed=0)\n"
                "print(env.unwrapped.num_rules, info['cost'] > 0)")
    assert p.returncode == 0, p.stderr
    assert p.stdout.split()[1] == "True" and int(p.stdout.split()[0]) > 0


def test_the_packages_import_without_gymnasium():
    # None in sys.modules is how Python spells "not installed" to every import of it
    p = _python("import sys\n"
                "sys.modules['gymnasium'] = None\n"
                "import envcore, subgen\n"
                "from envcore.gym.registration import register\n"
                "print(register(), sys.modules['gymnasium'] is None)")
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["False", "True"]


def test_train_finds_its_algorithms_through_the_registry():
    pytest.importorskip("torch")
    from subgen.pipelines.train import algorithm, trainable_agents
    assert trainable_agents() == ["ppo", "worldmodel"]     # search agents do not learn
    from agents.rl.ppo import PPOAgent
    assert algorithm("ppo") is PPOAgent
    from subgen.errors import BadInput
    with pytest.raises(BadInput, match="ppo, worldmodel"):
        algorithm("greedy")


def test_training_an_agent_that_does_not_learn_is_one_line_and_exit_2(tmp_path):
    pytest.importorskip("torch")
    p = subprocess.run([sys.executable, "-c", "from subgen.cli import main; main()", "train",
                        "--agent", "greedy", "--model", "toy", "--out", str(tmp_path / "r")],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "greedy" in p.stderr and not (tmp_path / "r").exists()


BLOCKED = """
import sys
for m in ("torch", "torch_geometric"):
    sys.modules[m] = None        # as in a light install: `import torch` fails
from subgen.cli import main
sys.argv = ["subgen", *sys.argv[1:]]
main()
"""


@pytest.mark.parametrize("args", [
    ["train", "--agent", "ppo", "--model", "toy", "--out", "{d}/run"],
    ["optimize", "toy", "--measure"],
    ["optimize", "toy", "--cost", "torch"],
    ["optimize", "toy", "--agent", "ppo", "--checkpoint", "{d}"],
], ids=["train", "measure", "torch-cost", "ppo-agent"])
def test_a_missing_extra_is_one_line_naming_it_and_exit_2(tmp_path, args):
    """The light core without torch: a command that needs it says which extra to install,
    in one line, before any work, and writes nothing."""
    done = subprocess.run([sys.executable, "-c", BLOCKED, *[a.format(d=tmp_path) for a in args]],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'subgen[" in lines[0], done.stderr
    assert not (tmp_path / "run").exists()
