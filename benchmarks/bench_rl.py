"""RL benchmark: best graph cost found against real environment steps, for random, greedy, taso
(budget 1000), ppo and worldmodel, under `analytic` cost; plus M's prediction quality and a
generalisation run (train on three models, evaluate greedily on unseen ones).

    python benchmarks/bench_rl.py [--quick]        # writes benchmarks/results/rl.md and rl.png
    pytest benchmarks/bench_rl.py --benchmark-only  # a one-iteration timing of each trainer

Steps: for ppo and worldmodel a step is one real `env.step`; for greedy/taso it is one search
expansion (each expansion costs every successor of a graph, so it is *more* than an env step);
random is a masked uniform policy in the env, in episodes of `max_steps`.

Rules: data/rules.db (proved, both directions) when it exists, else (or with --rules hand) the
hand-made rules of tests/rules_fixture.py (which only change the analytic cost of conv+relu
models: NasRNN and BERT stay flat under them).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
WM_MAX_ITERS = 8   # short episodes (BERT's) would otherwise need dozens of ~30 s iterations
sys.path.insert(0, str(ROOT / "tests"))


def load_rules(which="auto"):
    from subgen.paths import DEFAULT_RULES
    if which != "hand" and DEFAULT_RULES.exists():
        from subgen.optimize import load_rule_set
        return "data/rules.db", load_rule_set(DEFAULT_RULES)
    from rules_fixture import hand_rules
    return "tests/rules_fixture.hand_rules (12 hand-made rules)", hand_rules()


def random_curve(env, steps, seed=0):
    rng = np.random.default_rng(seed)
    obs, info = env.reset(seed=seed)
    best, curve = info["cost"], [(0, info["cost"])]
    for t in range(1, steps + 1):
        valid = np.flatnonzero(env.unwrapped.action_masks()[:-1])
        a = int(rng.choice(valid)) if len(valid) else env.action_space.n - 1
        obs, _, term, trunc, info = env.step(a)
        best = min(best, info["cost"])
        curve.append((t, best))
        if term or trunc:
            obs, info = env.reset()
    return curve


def search_curve(model, rules, agent, budget, size):
    from subgen.optimize import optimize
    t0 = time.perf_counter()
    res = optimize(model, rules=list(rules), agent=agent, budget=budget, size=size, check=False)
    return [(int(e), float(c)) for e, c in res.trace], res.cost_after, time.perf_counter() - t0


def train_curve(module, trainer_cls, args, envs, steps, max_iters=None):
    trainer = trainer_cls(args, envs)
    t0 = time.perf_counter()
    initial = float(np.mean([e.unwrapped.initial_cost for e in envs]))
    curve, rows = [(0, initial)], []    # points at iteration ends: steps have that granularity
    while trainer.real_steps < steps and (max_iters is None or trainer.iterations < max_iters):
        m = trainer.iteration()
        rows.append(m)
        curve.append((trainer.real_steps, m["best_cost"]))
    return trainer, curve, rows, time.perf_counter() - t0


def greedy_cost(agent, env):
    from rl_helpers import greedy_episode
    return greedy_episode(agent, env)[0]


def first_candidate_cost(env):
    """Final cost of one episode that always takes candidate 0 (with candidate_order "delta":
    the best estimated local delta), a trivial policy the learned ones must beat."""
    env.reset(seed=0)
    while True:
        a = 0 if env.unwrapped.action_masks()[0] else env.action_space.n - 1
        _, _, term, trunc, info = env.step(a)
        if term or trunc:
            return info["cost"]


def first_step_reaching(curve, target):
    return next((s for s, c in curve if c <= target * (1 + 1e-9)), None)


def main(quick=False, which_rules="auto", ppo_steps=None, wm_steps=None, gen=True,
         gen_only=False, only_models=None):
    import torch
    torch.set_num_threads(1)
    from agents import ppo, worldmodel as wm
    rules_name, rules = load_rules(which_rules)
    size = "tiny"
    models = only_models or ["nasrnn", "bert", "inception_v3"]
    ppo_steps = ppo_steps or (256 if quick else 1024)
    wm_steps = wm_steps or (120 if quick else 300)
    settings = dict(size=size, max_steps=32, max_candidates=64, candidate_order="delta")
    wm_extra = dict(random_episodes=3, episodes_per_iter=2)
    out, curves = [], {}
    if only_models and (RESULTS / "rl.json").exists():   # add to (or redo in) an earlier run
        saved = json.loads((RESULTS / "rl.json").read_text())
        out = [r for r in saved["rows"] if r["model"] not in only_models]
        curves = {m: c for m, c in saved["curves"].items() if m not in only_models}
    if gen_only:   # the per-model runs come from an earlier run's rl.json
        saved = json.loads((RESULTS / "rl.json").read_text())
        out, curves, models = saved["rows"], saved["curves"], []
        for r in out:
            if "cand0" not in r:
                r["cand0"] = first_candidate_cost(ppo.make_env(r["model"], ppo.Args(
                    model=r["model"], **settings), rules=rules))
    for model in models:
        pargs = ppo.Args(model=model, total_steps=ppo_steps, num_steps=128, **settings)
        wargs = wm.Args(model=model, total_steps=wm_steps, **settings, **wm_extra)
        env = ppo.make_env(model, pargs, rules=rules)
        row = {"model": model, "initial": env.unwrapped.initial_cost}
        c = {"random": random_curve(env, ppo_steps)}
        for name in ("greedy", "taso"):
            trace, cost, secs = search_curve(model, rules, name, 1000, size)
            c[name], row[name], row[name + "_s"] = trace, cost, secs
        row["random"] = c["random"][-1][1]
        row["cand0"] = first_candidate_cost(env)
        _, c["ppo"], prow, row["ppo_s"] = train_curve(ppo, ppo.PPOTrainer, pargs, [env], ppo_steps)
        row["ppo"] = c["ppo"][-1][1]
        trainer, c["worldmodel"], wrow, row["worldmodel_s"] = train_curve(
            wm, wm.WorldModelTrainer, wargs, [env], wm_steps, WM_MAX_ITERS)
        row["worldmodel"] = c["worldmodel"][-1][1]
        held = wrow[1:] or wrow    # held-out: each iteration's new episodes, before M fits them
        mean = lambda k: float(np.mean([r[k] for r in held]))  # noqa: E731
        row.update(mask_acc=mean("mask_accuracy"), mask_copy=mean("mask_accuracy_copy_baseline"),
                   mask_none=mean("mask_accuracy_none_baseline"), mask_f1=mean("mask_f1"),
                   mask_f1_copy=mean("mask_f1_copy_baseline"), reward_rmse=mean("reward_rmse"),
                   reward_std=mean("reward_std"))
        row["wm_steps_to_ppo"] = first_step_reaching(c["worldmodel"], row["ppo"])
        row["ppo_steps_to_ppo"] = first_step_reaching(c["ppo"], row["ppo"])
        curves[model] = c
        out.append(row)
        print(json.dumps(row), flush=True)
        (RESULTS / "rl.json").write_text(json.dumps({"rows": out, "curves": curves}))
    if not gen:
        write_results(out, [], curves, rules_name, settings, ppo_steps, wm_steps, [])
        return

    # generalisation: train on three CNNs, evaluate greedily on models never seen in training
    train_models, test_models = ["squeezenet", "resnet50", "nasnet_a"], ["inception_v3", "resnext50"]
    gargs = ppo.Args(model=",".join(train_models), total_steps=ppo_steps, num_steps=128, **settings)
    genvs = [ppo.make_env(m, gargs, seed=i, rules=rules) for i, m in enumerate(train_models)]
    gtrainer, *_ = train_curve(ppo, ppo.PPOTrainer, gargs, genvs, ppo_steps)
    wgargs = wm.Args(model=",".join(train_models), total_steps=wm_steps, **settings, **wm_extra)
    wtrainer, *_ = train_curve(wm, wm.WorldModelTrainer, wgargs, genvs, wm_steps, WM_MAX_ITERS)
    gen = []
    for m in test_models:
        env = ppo.make_env(m, gargs, rules=rules)
        _, g_cost, _ = search_curve(m, rules, "greedy", 1000, size)
        gen.append({"model": m, "initial": env.unwrapped.initial_cost, "greedy": g_cost,
                    "cand0": first_candidate_cost(env),
                    "ppo": greedy_cost(gtrainer.agent(), env),
                    "worldmodel": greedy_cost(wtrainer.agent(), env)})
        print(json.dumps(gen[-1]), flush=True)
    write_results(out, gen, curves, rules_name, settings, ppo_steps, wm_steps, train_models)


def write_results(rows, gen, curves, rules_name, settings, ppo_steps, wm_steps, train_models):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    RESULTS.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 4))
    for ax, (model, c) in zip(np.atleast_1d(axes), curves.items()):
        for name, pts in c.items():
            xs, ys = zip(*pts)
            ax.step(xs, ys, where="post", label=name)
        ax.set_xscale("symlog")
        ax.set_title(f"{model} ({settings['size']})")
        ax.set_xlabel("real env steps (search: expansions)")
        ax.set_ylabel("best cost (ms, analytic)")
        ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "rl.png", dpi=100)
    f = lambda v: "—" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v))  # noqa: E731
    lines = ["# RL agents vs search (analytic cost)", "",
             f"Rules: {rules_name}.  Models at size `{settings['size']}`, max_steps "
             f"{settings['max_steps']}, max_candidates {settings['max_candidates']}, candidate "
             f"order `{settings.get('candidate_order', 'rule')}`; ppo {ppo_steps} real steps, "
             f"worldmodel {wm_steps}; taso/greedy budget 1000 expansions; one torch thread on a "
             "shared 2-core machine.  `cand0`: always take candidate 0 (the best estimated delta).",
             "", "| model | initial | random | cand0 | greedy | taso | ppo | worldmodel | "
             "wm steps to ppo's final | ppo steps to its final | ppo s | wm s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {f(r['initial'])} | {f(r['random'])} | "
                     f"{f(r.get('cand0'))} | {f(r['greedy'])} | "
                     f"{f(r['taso'])} | {f(r['ppo'])} | {f(r['worldmodel'])} | "
                     f"{f(r['wm_steps_to_ppo'])} | {f(r['ppo_steps_to_ppo'])} | "
                     f"{r['ppo_s']:.0f} | {r['worldmodel_s']:.0f} |")
    lines += ["", "M (ensemble member 0) on each iteration's new real episodes, before it is fit "
              "on them (held out), averaged over iterations after the first:", "",
              "| model | mask acc | copy baseline | no-rule baseline | mask F1 | copy F1 | "
              "reward RMSE | reward std |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['mask_acc']:.4f} | {r['mask_copy']:.4f} | "
                     f"{r.get('mask_none', float('nan')):.4f} | {r.get('mask_f1', float('nan')):.3f} | "
                     f"{r.get('mask_f1_copy', float('nan')):.3f} | {r['reward_rmse']:.3f} | "
                     f"{r['reward_std']:.3f} |")
    if gen:
        lines += ["", f"Generalisation: trained on {', '.join(train_models)}; greedy evaluation "
                  "on unseen models (final cost, ms).", "",
                  "| unseen model | initial | cand0 | greedy search | ppo | worldmodel |",
                  "|---|---|---|---|---|---|"]
        for g in gen:
            lines.append(f"| {g['model']} | {f(g['initial'])} | {f(g.get('cand0'))} | "
                         f"{f(g['greedy'])} | {f(g['ppo'])} | {f(g['worldmodel'])} |")
    lines += ["", "![best cost vs real steps](rl.png)", ""]
    (RESULTS / "rl.md").write_text("\n".join(lines))


# -- pytest-benchmark: one training iteration of each agent, same model and settings ----------

def _one_iteration(agent_name):
    import torch
    torch.set_num_threads(1)
    from rules_fixture import hand_rules
    from agents import ppo, worldmodel as wm
    module, cls = (ppo, ppo.PPOTrainer) if agent_name == "ppo" else (wm, wm.WorldModelTrainer)
    args = module.Args(model="squeezenet", size="tiny")
    trainer = cls(args, [ppo.make_env("squeezenet", args, rules=hand_rules())])
    return trainer.iteration


def test_ppo_iteration(benchmark):
    benchmark.pedantic(_one_iteration("ppo"), rounds=3, iterations=1)


def test_worldmodel_iteration(benchmark):
    benchmark.pedantic(_one_iteration("worldmodel"), rounds=2, iterations=1)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    p.add_argument("--rules", choices=["auto", "hand"], default="auto",
                   help="auto: data/rules.db when present; hand: tests/rules_fixture.py")
    p.add_argument("--ppo-steps", type=int, default=None)
    p.add_argument("--wm-steps", type=int, default=None)
    p.add_argument("--no-gen", action="store_true", help="skip the generalisation runs")
    p.add_argument("--gen-only", action="store_true",
                   help="only the generalisation runs; the per-model rows come from rl.json")
    p.add_argument("--models", default=None, help="comma separated; merged into rl.json")
    a = p.parse_args()
    main(a.quick, a.rules, a.ppo_steps, a.wm_steps, not a.no_gen, a.gen_only,
         a.models.split(",") if a.models else None)
