"""RL benchmark: best graph cost found against real environment steps, for random, greedy, taso
(budget 1000), ppo and worldmodel, under `analytic` cost; plus M's prediction quality and a
generalisation run (train on three models, evaluate greedily on unseen ones).

    python benchmarks/bench_rl.py [--quick]        # writes benchmarks/results/rl.md and rl.png
    pytest benchmarks/bench_rl.py --benchmark-only  # a one-iteration timing of each trainer

Steps: for ppo and worldmodel a step is one real `env.step` (training, then one greedy
evaluation episode, whose steps count too); for greedy/taso it is one search expansion (each
expansion costs every successor of a graph, so it is *more* than an env step); random is a masked
uniform policy in the env, in episodes of `max_steps`.  Every cost is the best graph passed.
All use the env's cost model (`analytic`, default constructor), whatever `subgen optimize`
defaults to.  `--render` re-draws rl.md and rl.png from rl.json.

Rules: subgen/data/rules.db (proved, both directions) when it exists, else (or with --rules hand) the
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
        from subgen.pipelines.optimize import load_rule_set
        return "subgen/data/rules.db", load_rule_set(DEFAULT_RULES)
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


def search_curve(model, rules, agent, budget, size, cost_model=None):
    """A search agent on the zoo model under `cost_model` (default: `analytic` from its default
    constructor, the env's): the same cost the RL agents see, whatever profile `subgen optimize`
    defaults to."""
    from agents.base import get_agent
    from agents.search.problem import SearchProblem
    from envcore.cost import get_cost_model
    from envcore.zoo import build
    cost_model = cost_model or get_cost_model("analytic")
    t0 = time.perf_counter()
    res = get_agent(agent).search(SearchProblem(build(model, size=size), list(rules), cost_model),
                                  budget)
    return [(int(e), float(c)) for e, c in res.trace], float(res.cost), time.perf_counter() - t0


def train_curve(module, trainer_cls, args, envs, steps, max_iters=None):
    """Trains until `steps` real steps; the curve is the best cost of any graph passed in a real
    step, at every step where it improved (the trainers' `best_trace`)."""
    trainer = trainer_cls(args, envs)
    t0 = time.perf_counter()
    rows = []
    while trainer.real_steps < steps and (max_iters is None or trainer.iterations < max_iters):
        rows.append(trainer.iteration())
    initial = float(np.mean([e.unwrapped.initial_cost for e in envs]))
    curve = [(0, initial)] + [(int(s), float(c)) for s, c in trainer.best_trace if s > 0]
    curve.append((trainer.real_steps, trainer.best_cost))
    return trainer, curve, rows, time.perf_counter() - t0


def greedy_best(agent, env):
    """(best cost along one greedy episode, its real steps): evaluation is greedy and keeps the
    cheapest graph it passes, as `subgen optimize --agent ppo` does."""
    obs, info = env.reset(seed=0)
    if hasattr(agent, "reset"):
        agent.reset()
    best, steps = info["cost"], 0
    while True:
        obs, _, terminated, truncated, info = env.step(agent.act(obs, env.unwrapped.action_masks()))
        steps += 1
        best = min(best, info["cost"])
        if terminated or truncated:
            return best, steps


def first_candidate_cost(env):
    """Best cost along one episode that always takes candidate 0 (with candidate_order "delta":
    the best estimated local delta): the trivial policy the learned ones must beat."""
    obs, info = env.reset(seed=0)
    best = info["cost"]
    while True:
        a = 0 if env.unwrapped.action_masks()[0] else env.action_space.n - 1
        _, _, term, trunc, info = env.step(a)
        best = min(best, info["cost"])
        if term or trunc:
            return best


# "reaches" a cost: within 0.01%.  Graphs reached by different rewrite orders can differ by a
# view op or the like: nanoseconds under the analytic model (below 0.1 us on every model here),
# which no measurement could tell apart.  The tables print enough digits to show them.
SAME = 1e-4


def first_step_reaching(curve, target):
    return next((s for s, c in curve if c <= target * (1 + SAME)), None)


def steps_to(row, curves):
    """The "steps to" columns, from the curves (so a re-render applies the same tolerance)."""
    c = curves[row["model"]]
    return {"wm_steps_to_ppo": first_step_reaching(c["worldmodel"], row["ppo"]),
            "ppo_steps_to_ppo": first_step_reaching(c["ppo"], row["ppo"]),
            "ppo_steps_to_taso": first_step_reaching(c["ppo"], row["taso"]),
            "wm_steps_to_taso": first_step_reaching(c["worldmodel"], row["taso"])}


SETTINGS = dict(size="small", max_steps=64, max_candidates=64, candidate_order="delta")
WM_EXTRA = dict(random_episodes=2, episodes_per_iter=2)
TRAIN_MODELS = ["squeezenet", "resnet50", "nasnet_a"]
UNSEEN = ["nasrnn", "bert", "inception_v3", "resnext50", "vit"]


def run_model(model, rules, ppo_steps, wm_steps, settings):
    from agents.rl import ppo, worldmodel as wm
    size = settings["size"]
    pargs = ppo.Args(model=model, total_steps=ppo_steps, num_steps=128, **settings)
    wargs = wm.Args(model=model, total_steps=wm_steps, **settings, **WM_EXTRA)
    env = ppo.make_env(model, pargs, rules=rules)
    row = {"model": model, "initial": env.unwrapped.initial_cost}
    c = {"random": random_curve(env, ppo_steps)}
    row["random"] = c["random"][-1][1]
    for name in ("greedy", "taso"):
        trace, cost, secs = search_curve(model, rules, name, 1000, size, env.unwrapped.cost_model)
        c[name], row[name], row[name + "_s"] = trace, cost, secs
    row["cand0"] = first_candidate_cost(env)
    trainer, c["ppo"], _, row["ppo_s"] = train_curve(ppo, ppo.PPOTrainer, pargs, [env], ppo_steps)
    row["ppo_train"] = trainer.best_cost
    row["ppo_eval"], eval_steps = greedy_best(trainer.agent(), env)
    row["ppo_steps"] = trainer.real_steps + eval_steps      # the evaluation's steps count too
    row["ppo"] = min(row["ppo_train"], row["ppo_eval"])
    if row["ppo_eval"] < row["ppo_train"]:
        c["ppo"].append((row["ppo_steps"], row["ppo_eval"]))
    c["ppo"].append((row["ppo_steps"], row["ppo"]))
    trainer, c["worldmodel"], wrows, row["worldmodel_s"] = train_curve(
        wm, wm.WorldModelTrainer, wargs, [env], wm_steps, WM_MAX_ITERS)
    row["wm_train"] = trainer.best_cost
    row["wm_eval"], eval_steps = greedy_best(trainer.agent(), env)
    row["wm_steps"] = trainer.real_steps + eval_steps
    row["worldmodel"] = min(row["wm_train"], row["wm_eval"])
    c["worldmodel"].append((row["wm_steps"], row["worldmodel"]))
    held = wrows[1:] or wrows    # held-out: each iteration's new episodes, before M fits them
    mean = lambda k: float(np.mean([r[k] for r in held]))  # noqa: E731
    row.update(mask_acc=mean("mask_accuracy"), mask_copy=mean("mask_accuracy_copy_baseline"),
               mask_none=mean("mask_accuracy_none_baseline"), mask_f1=mean("mask_f1"),
               mask_f1_copy=mean("mask_f1_copy_baseline"), reward_rmse=mean("reward_rmse"),
               reward_rmse_delta=mean("reward_rmse_delta_baseline"),
               reward_std=mean("reward_std"))
    row.update(steps_to(row, {model: c}))
    return row, c


def run_generalisation(rules, ppo_steps, wm_steps, settings):
    """Train on TRAIN_MODELS (episodes rotate over them), evaluate greedily on UNSEEN."""
    from agents.rl import ppo, worldmodel as wm
    gargs = ppo.Args(model=",".join(TRAIN_MODELS), total_steps=ppo_steps, num_steps=128, **settings)
    genvs = [ppo.make_env(m, gargs, seed=i, rules=rules) for i, m in enumerate(TRAIN_MODELS)]
    gtrainer, _, _, ppo_s = train_curve(ppo, ppo.PPOTrainer, gargs, genvs, ppo_steps)
    wgargs = wm.Args(model=",".join(TRAIN_MODELS), total_steps=wm_steps, **settings, **WM_EXTRA)
    wtrainer, _, _, wm_s = train_curve(wm, wm.WorldModelTrainer, wgargs, genvs, wm_steps,
                                       WM_MAX_ITERS)
    gen = []
    for m in UNSEEN:
        env = ppo.make_env(m, gargs, rules=rules)
        _, g_cost, _ = search_curve(m, rules, "greedy", 1000, settings["size"],
                                    env.unwrapped.cost_model)
        gen.append({"model": m, "initial": env.unwrapped.initial_cost, "greedy": g_cost,
                    "cand0": first_candidate_cost(env),
                    "ppo": greedy_best(gtrainer.agent(), env)[0],
                    "worldmodel": greedy_best(wtrainer.agent(), env)[0],
                    "ppo_train_s": ppo_s, "wm_train_s": wm_s,
                    "ppo_train_steps": gtrainer.real_steps, "wm_train_steps": wtrainer.real_steps})
        print(json.dumps(gen[-1]), flush=True)
    return gen


def main(quick=False, which_rules="auto", ppo_steps=None, wm_steps=None, gen=True,
         gen_only=False, only_models=None, size=None):
    import torch
    torch.set_num_threads(1)
    rules_name, rules = load_rules(which_rules)
    settings = dict(SETTINGS, size=size or SETTINGS["size"])
    models = only_models or ["nasrnn", "bert", "inception_v3"]
    ppo_steps = ppo_steps or (256 if quick else 2048)
    wm_steps = wm_steps or (120 if quick else 400)
    saved = json.loads((RESULTS / "rl.json").read_text()) \
        if (only_models or gen_only) and (RESULTS / "rl.json").exists() else {}
    out = [r for r in saved.get("rows", []) if r["model"] not in models]
    curves = {m: c for m, c in saved.get("curves", {}).items() if m not in models}
    gen_rows = saved.get("gen", [])
    if gen_only:
        out, curves, models = saved["rows"], saved["curves"], []
    for model in models:
        row, curves[model] = run_model(model, rules, ppo_steps, wm_steps, settings)
        out.append(row)
        print(json.dumps(row), flush=True)
        (RESULTS / "rl.json").write_text(json.dumps({"rows": out, "curves": curves,
                                                     "gen": gen_rows}))
    if gen:
        gen_rows = run_generalisation(rules, ppo_steps, wm_steps, settings)
        (RESULTS / "rl.json").write_text(json.dumps({"rows": out, "curves": curves,
                                                     "gen": gen_rows}))
    write_results(out, gen_rows, curves, rules_name, settings, ppo_steps, wm_steps)


def write_results(rows, gen, curves, rules_name, settings, ppo_steps, wm_steps):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    RESULTS.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 4))
    styles = {"greedy": dict(lw=3, alpha=0.4), "taso": dict(ls="--")}
    for ax, (model, c) in zip(np.atleast_1d(axes), curves.items()):
        for name, pts in c.items():
            xs, ys = zip(*pts)
            ax.step(xs, ys, where="post", label=name, **styles.get(name, {}))
        ax.set_xscale("symlog")
        ax.set_title(f"{model} ({settings['size']})")
        ax.set_xlabel("real env steps (search: expansions)")
        ax.set_ylabel("best cost (ms, analytic)")
        ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "rl.png", dpi=100)
    f = lambda v: "—" if v is None else (f"{v:.6f}" if isinstance(v, float) else str(v))  # noqa: E731
    lines = ["# RL agents vs search (analytic cost)", "",
             f"Rules: {rules_name}.  Models at size `{settings['size']}`, max_steps "
             f"{settings['max_steps']}, max_candidates {settings['max_candidates']}, candidate "
             f"order `{settings['candidate_order']}`; ppo {ppo_steps} training steps, worldmodel "
             f"up to {wm_steps} (at most {WM_MAX_ITERS} iterations), each then one greedy "
             "evaluation episode (its steps counted); taso/greedy budget 1000 expansions; one "
             "torch thread on a shared 2-core machine.  Costs are the best graph passed (ms).  "
             "`cand0`: always take candidate 0 (the best estimated delta).", "",
             "| model | initial | random | cand0 | greedy | taso | ppo | worldmodel | "
             "ppo steps (train+eval) | ppo steps to its final (to taso's) | "
             "wm steps to ppo's final | "
             "wm / ppo steps | ppo s | wm s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        r.update(steps_to(r, curves))
        ratio = r["wm_steps_to_ppo"] / r["ppo_steps"] if r["wm_steps_to_ppo"] else None
        lines.append(f"| {r['model']} | {f(r['initial'])} | {f(r['random'])} | "
                     f"{f(r['cand0'])} | {f(r['greedy'])} | {f(r['taso'])} | {f(r['ppo'])} | "
                     f"{f(r['worldmodel'])} | {r['ppo_steps']} | {f(r['ppo_steps_to_ppo'])} "
                     f"({f(r['ppo_steps_to_taso'])}) | "
                     f"{f(r['wm_steps_to_ppo'])} | {'—' if ratio is None else f'{ratio:.2f}'} | "
                     f"{r['ppo_s']:.0f} | {r['worldmodel_s']:.0f} |")
    lines += ["", "ppo: best in training / greedy evaluation; worldmodel likewise:", "",
              "| model | ppo train | ppo eval | wm train | wm eval | wm real steps |",
              "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {f(r['ppo_train'])} | {f(r['ppo_eval'])} | "
                     f"{f(r['wm_train'])} | {f(r['wm_eval'])} | {r['wm_steps']} |")
    lines += ["", "M (ensemble member 0), one step ahead, on each iteration's new real episodes "
              "before it is fit on them (held out), averaged over iterations after the first.  "
              "Baselines: copy the current mask; no rule applies; reward = the chosen rule's "
              "current `cand_delta` (the env's own estimate):", "",
              "| model | mask acc | copy | no-rule | mask F1 | copy F1 | reward RMSE | "
              "delta-baseline RMSE | reward std |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['mask_acc']:.5f} | {r['mask_copy']:.5f} | "
                     f"{r['mask_none']:.5f} | {r['mask_f1']:.3f} | {r['mask_f1_copy']:.3f} | "
                     f"{r['reward_rmse']:.3f} | {r['reward_rmse_delta']:.3f} | "
                     f"{r['reward_std']:.3f} |")
    if gen:
        g0 = gen[0]
        lines += ["", f"Generalisation: trained on {', '.join(TRAIN_MODELS)} (ppo "
                  f"{g0['ppo_train_steps']} steps in {g0['ppo_train_s']:.0f} s, worldmodel "
                  f"{g0['wm_train_steps']} in {g0['wm_train_s']:.0f} s); one greedy episode on "
                  "each unseen model (best cost, ms).", "",
                  "| unseen model | initial | cand0 | greedy search | ppo | worldmodel |",
                  "|---|---|---|---|---|---|"]
        for g in gen:
            lines.append(f"| {g['model']} | {f(g['initial'])} | {f(g['cand0'])} | "
                         f"{f(g['greedy'])} | {f(g['ppo'])} | {f(g['worldmodel'])} |")
    lines += ["", "![best cost vs real steps](rl.png)", ""]
    notes = RESULTS / "rl_notes.md"    # hand-written settings and findings, kept on re-renders
    if notes.exists():
        lines += [notes.read_text()]
    (RESULTS / "rl.md").write_text("\n".join(lines))


# -- pytest-benchmark: one training iteration of each agent, same model and settings ----------

def _one_iteration(agent_name):
    import torch
    torch.set_num_threads(1)
    from rules_fixture import hand_rules
    from agents.rl import ppo, worldmodel as wm
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
                   help="auto: subgen/data/rules.db when present; hand: tests/rules_fixture.py")
    p.add_argument("--ppo-steps", type=int, default=None)
    p.add_argument("--wm-steps", type=int, default=None)
    p.add_argument("--no-gen", action="store_true", help="skip the generalisation runs")
    p.add_argument("--gen-only", action="store_true",
                   help="only the generalisation runs; the per-model rows come from rl.json")
    p.add_argument("--models", default=None, help="comma separated; merged into rl.json")
    p.add_argument("--size", default=None, choices=["full", "small", "tiny"])
    p.add_argument("--render", action="store_true",
                   help="only re-render rl.md and rl.png from rl.json (with the given settings)")
    a = p.parse_args()
    if a.render:
        saved = json.loads((RESULTS / "rl.json").read_text())
        write_results(saved["rows"], saved.get("gen", []), saved["curves"], load_rules(a.rules)[0],
                      dict(SETTINGS, size=a.size or SETTINGS["size"]),
                      a.ppo_steps or 2048, a.wm_steps or 400)
        sys.exit(0)
    main(a.quick, a.rules, a.ppo_steps, a.wm_steps, not a.no_gen, a.gen_only,
         a.models.split(",") if a.models else None, a.size)
