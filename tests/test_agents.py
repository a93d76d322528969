"""Search agents and the agent registry.

Every result is checked by running the original and the optimized graph on the same random
values (numpy, float64), and every cost by re-costing the returned graph as a whole.
"""
from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from agents.base import BUILTIN, get_agent, registry
from agents.search.problem import Move, SearchProblem
from envcore import zoo
from envcore.cost import CostModel, get_cost_model
from envcore.execute import equivalent
from envcore.graph import GraphBuilder
from envcore.rewrite.apply import apply
from envcore.rewrite.rule import Rule
from rules_fixture import double_transpose, hand_rules

SEARCH_AGENTS = ["random", "greedy", "beam", "taso"]
MODELS = ["toy", "squeezenet", "resnet50", "bert", "nasrnn"]
PLUGIN = Path(__file__).parent / "agent_plugin"


@pytest.fixture(scope="module")
def rules():
    return hand_rules()


@pytest.fixture(scope="module")
def graphs():
    return {m: zoo.build(m, "tiny") for m in MODELS}


def _search(agent, graph, rules, budget=40, cost=None, **kw):
    cm = cost or get_cost_model("analytic")
    return get_agent(agent, **kw).search(SearchProblem(graph, rules, cm), budget), cm


# ---------------------------------------------------------------------------------- the agents

@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("agent", SEARCH_AGENTS)
def test_agent_never_increases_cost_and_stays_equivalent(agent, model, rules, graphs):
    g = graphs[model]
    res, cm = _search(agent, g, rules)
    assert res.cost <= res.initial_cost
    assert res.initial_cost == pytest.approx(cm.graph_cost(g))
    assert res.cost == pytest.approx(cm.graph_cost(res.graph), rel=1e-9)
    best = [c for _, c in res.trace]
    assert all(b <= a for a, b in zip(best, best[1:])), "the best cost never goes up"
    ok, err = equivalent(g, res.graph)
    assert ok, f"{agent} on {model}: max abs err {err}"


@pytest.mark.parametrize("agent", ["greedy", "beam", "taso"])
def test_agents_find_the_obvious_improvements(agent, rules, graphs):
    # toy has two unfused conv+relu pairs and mergeable convs and matmuls
    res, _ = _search(agent, graphs["toy"], rules)
    assert res.cost < res.initial_cost
    assert res.rewrites and set(res.rewrites) <= {r.name for r in rules}


@pytest.mark.parametrize("model", ["toy", "squeezenet", "resnet50", "nasrnn"])
def test_taso_with_alpha_one_is_greedy(model, rules, graphs):
    greedy, _ = _search("greedy", graphs[model], rules, budget=200)
    taso, _ = _search("taso", graphs[model], rules, budget=200, alpha=1.0)
    assert taso.cost == pytest.approx(greedy.cost)
    assert taso.rewrites == greedy.rewrites


# A case built by hand where the best graph lies behind one step uphill:
#   y = a @ b + t(t(b) @ t(c))                                      cost 21.6
#   t(p @ q) -> t(q) @ t(p)        (one more transpose: uphill)     cost 21.8
#   t(t(z)) -> z, twice                                             cost 21.4
#   a @ b + c @ b -> (a + c) @ b                                    cost 11
MATRIX = {"a": (2, 3), "b": (3, 5), "c": (2, 3)}


class OpWeights(CostModel):
    """A cost per operator kind, whatever the shapes."""
    name = "opweights"
    WEIGHT = {"matmul": 10.0, "transpose": 0.2, "ewadd": 1.0}

    def measure(self, op, params, in_shapes, out_shapes):
        return self.WEIGHT[op]


def _uphill_case():
    def rule(name, src, dst):
        s, d = GraphBuilder(), GraphBuilder()
        return Rule(name, s.build([src(s)]), d.build([dst(d)]))

    def t(b, x):
        return b.add("transpose", x, perm=(1, 0))

    transpose_matmul = rule(
        "transpose_matmul",
        lambda b: t(b, b.add("matmul", b.input("p", (5, 3)), b.input("q", (3, 2)))),
        lambda b: b.add("matmul", t(b, b.input("q", (3, 2))), t(b, b.input("p", (5, 3)))))
    factor = rule(
        "factor_matmul",
        lambda b: b.add("ewadd", b.add("matmul", b.input("a", (2, 3)), b.input("b", (3, 5))),
                        b.add("matmul", b.input("c", (2, 3)), b.input("b", (3, 5)))),
        lambda b: b.add("matmul", b.add("ewadd", b.input("a", (2, 3)), b.input("c", (2, 3))),
                        b.input("b", (3, 5))))
    g = GraphBuilder()
    a, b_, c = (g.input(k, s) for k, s in MATRIX.items())
    y = g.add("ewadd", g.add("matmul", a, b_), t(g, g.add("matmul", t(g, b_), t(g, c))))
    return g.build([y]), [transpose_matmul, double_transpose(), factor]


def test_taso_goes_uphill_where_greedy_stops():
    graph, rules = _uphill_case()
    greedy, cm = _search("greedy", graph, rules, cost=OpWeights())
    taso, _ = _search("taso", graph, rules, cost=OpWeights(), alpha=1.05)
    strict, _ = _search("taso", graph, rules, cost=OpWeights(), alpha=1.0)
    assert greedy.cost == pytest.approx(21.6) and greedy.rewrites == []
    assert strict.cost == pytest.approx(greedy.cost)
    assert taso.cost == pytest.approx(11.0) and taso.cost < greedy.cost
    assert taso.rewrites[0] == "transpose_matmul"   # the step uphill comes first
    assert sorted(taso.rewrites) == ["double_transpose"] * 2 + ["factor_matmul", "transpose_matmul"]
    assert cm.graph_cost(taso.graph) == pytest.approx(taso.cost)
    assert equivalent(graph, taso.graph)[0]


def test_budget_bounds_expansions(rules, graphs):
    for agent in ("greedy", "beam", "taso", "random"):
        res, _ = _search(agent, graphs["squeezenet"], rules, budget=3)
        assert res.expansions <= 3


# ------------------------------------------------------------------- pricing moves before building

@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(model=st.sampled_from(MODELS), walk=st.lists(st.integers(0, 10_000), max_size=4))
def test_predicted_costs_equal_the_built_graphs_cost(model, walk, rules, graphs):
    """Along a random walk, every move priced exactly costs what the rewritten graph costs."""
    cm = get_cost_model("analytic")
    p = SearchProblem(graphs[model], rules, cm)
    state = p.start()
    for pick in walk + [None]:
        moves = p.moves(state)
        for mv in moves:
            if mv.exact:
                g, _ = apply(state.graph, rules[mv.match.rule_index], mv.match)
                assert mv.cost == pytest.approx(cm.graph_cost(g), rel=1e-9, abs=1e-12), \
                    rules[mv.match.rule_index].name
        if pick is None or not moves:
            break
        nxt = p.build(moves[pick % len(moves)])
        if nxt is None:
            break
        state = nxt


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(model=st.sampled_from(MODELS), picks=st.tuples(st.integers(0, 10_000), st.integers(0, 10_000)))
def test_the_same_rewrites_in_either_order_are_one_state(model, picks, rules, graphs):
    """taso skips a move before building it when the set of match objects applied on its way
    (`applied`) was seen: that must mean the same graph.  Two rewrites that both survive the
    other (each match object is kept by the other's rewrite) commute."""
    p = SearchProblem(graphs[model], rules, get_cost_model("analytic"))
    start = p.start()
    moves = p.moves(start)
    if len(moves) < 2:
        return
    a, b = moves[picks[0] % len(moves)], moves[picks[1] % len(moves)]
    if a is b:
        return
    ends = []
    for first, second in ((a, b), (b, a)):
        mid = p.build(Move(start, first.match, first.cost, first.exact))
        if mid is None:
            return
        again = [m for m in p.moves(mid) if m.match is second.match]
        if not again:
            return   # the first rewrite re-made or dropped the second's match: not this case
        end = p.build(again[0])
        if end is None:
            return
        ends.append(end)
    assert ends[0].applied == ends[1].applied
    assert ends[0].key == ends[1].key


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(model=st.sampled_from(MODELS), pick=st.integers(0, 10_000))
def test_a_move_that_undoes_the_last_rewrite_leads_back(model, pick, rules, graphs):
    """taso skips the moves `undoes` flags without building them: each must rebuild the graph
    before the last rewrite."""
    from subgen.rules.derive import both_directions
    both = both_directions(rules)
    p = SearchProblem(graphs[model], both, get_cost_model("analytic"))
    start = p.start()
    moves = p.moves(start)
    if not moves:
        return
    mid = p.build(moves[pick % len(moves)])
    if mid is None:
        return
    flagged = [m for m in p.moves(mid) if p.undoes(m)]
    for m in flagged:
        back = p.build(m)
        assert back is not None and back.key == start.key


def test_undo_detection_is_not_vacuous(rules, graphs):
    from subgen.rules.derive import both_directions
    p = SearchProblem(graphs["toy"], both_directions(rules), get_cost_model("analytic"))
    start = p.start()
    found = 0
    for move in p.moves(start):
        mid = p.build(move)
        if mid is not None:
            found += sum(p.undoes(m) for m in p.moves(mid))
    assert found > 0


def test_predicted_costs_are_exact_with_the_shipped_rules():
    """The same on the rule DB `subgen optimize` uses (thousands of generated rules, both ways)."""
    from subgen.pipelines.optimize import load_rule_set
    from subgen.paths import DEFAULT_RULES
    from subgen.errors import BadInput
    try:
        rules = load_rule_set(DEFAULT_RULES)
    except BadInput:
        pytest.skip("no proved rules in subgen/data/rules.db yet (`subgen generate`)")
    cm = get_cost_model("analytic")
    checked = 0
    for model in ("toy", "squeezenet"):
        p = SearchProblem(zoo.build(model, "tiny"), rules, cm)
        state = p.start()
        for step in range(2):
            moves = p.moves(state)
            for mv in moves[::3]:
                if mv.exact:
                    try:
                        g, _ = apply(state.graph, rules[mv.match.rule_index], mv.match)
                    except ValueError:   # RewriteError: a cycle; the search skips these too
                        continue
                    assert mv.cost == pytest.approx(cm.graph_cost(g), rel=1e-9, abs=1e-12)
                    checked += 1
            state = next(s for s in map(p.build, moves[len(moves) // 2:]) if s is not None)
    assert checked > 20


class _FusingAnalytic(get_cost_model("analytic").__class__):
    """The analytic model, made contextual as onnxruntime's is: a conv's or 2-D matmul's own
    bias_add costs nothing (envcore/cost/ort_cost.py, without timing anything)."""
    contextual = True

    def fused(self, graph, node):
        from envcore.onnx.exporter import bias_producer
        return node.op == "bias_add" and bias_producer(graph, node) is not None


def _biased_cnn():
    """conv+bias(relu), conv+bias, a residual add, global pooling and a Gemm: what exported
    CNNs carry, and what the shipped DB's bias rules match."""
    b = GraphBuilder()
    x = b.input("x", (1, 4, 6, 6))
    y = b.add("conv2d", x, b.weight("w1", (4, 4, 3, 3)), stride=(1, 1), padding="same")
    y = b.add("bias_add", y, b.weight("b1", (4,)), axis=1, activation="relu")
    z = b.add("conv2d", y, b.weight("w2", (4, 4, 3, 3)), stride=(1, 1), padding="same")
    z = b.add("bias_add", z, b.weight("b2", (4,)), axis=1)
    r = b.add("relu", b.add("ewadd", z, x))
    c = b.add("concat", r, y, axis=1)
    p = b.add("reshape", b.add("pool_global_avg", c), shape=(1, 8))
    out = b.add("bias_add", b.add("matmul", p, b.weight("fc", (8, 3))), b.weight("fb", (3,)),
                axis=1)
    q = b.input("q", (1, 4, 6, 6))      # and, away from any fusion, an add of two activations
    side = b.add("ewadd", b.add("relu", q), b.add("tanh", q))
    return b.build([out, side])


def test_a_contextual_cost_model_prices_a_rewrite_near_a_fusion_by_building_it():
    """Under a cost model where a bias fuses into its conv, what a rewrite does to the fusion
    is not the sum of the ops it removes and adds: every price called exact must be the built
    graph's cost, and some near a fusion must have needed building (else this proves nothing)."""
    from envcore.rewrite.candidate_set import CandidateSet
    from envcore.rewrite.price import Pricer
    from subgen.errors import BadInput
    from subgen.pipelines.optimize import load_rule_set
    try:
        rules = load_rule_set(None)
    except BadInput:
        pytest.skip("no proved rules in subgen/data/rules.db yet (`subgen generate`)")
    cm, g = _FusingAnalytic(), _biased_cnn()
    assert sum(cm.fused(g, n) for n in g.nodes.values()) == 3   # two convs' biases, Gemm's
    cost, pricer = cm.graph_cost(g), Pricer(cm)
    exact = off = 0
    for m in CandidateSet(rules, g).matches:
        p = pricer.predict(g, cost, rules[m.rule_index], m)
        try:
            built, _ = apply(g, rules[m.rule_index], m)
        except ValueError:
            continue
        if p is None:
            continue
        if p[1]:
            assert p[0] == pytest.approx(cm.graph_cost(built), rel=1e-9, abs=1e-12)
            exact += 1
        elif abs(p[0] - cm.graph_cost(built)) > 1e-9:
            off += 1
    assert exact > 0 and off > 0, (exact, off)


# ------------------------------------------------------------------------------- the registry

def test_builtin_agents_are_registered():
    names = registry()
    for name in ("random", "greedy", "beam", "taso", "ppo", "worldmodel"):
        assert name in names
    assert get_agent("taso", alpha=1.2, seed=3).alpha == 1.2   # options it lacks are dropped
    assert get_agent("beam", width=2).width == 2


def test_unknown_agent_is_a_key_error():
    with pytest.raises(KeyError, match="unknown agent 'nope'"):
        get_agent("nope")


@pytest.fixture
def plugin_on_path(tmp_path, monkeypatch):
    """Installs tests/agent_plugin the way pip would, as far as discovery goes: the package on
    sys.path and a dist-info directory whose entry_points.txt comes from its pyproject."""
    meta = tomllib.loads((PLUGIN / "pyproject.toml").read_text())["project"]
    info = tmp_path / f"{meta['name'].replace('-', '_')}-{meta['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {meta['name']}\nVersion: {meta['version']}\n")
    lines = []
    for group, eps in meta["entry-points"].items():
        lines.append(f"[{group}]")
        lines += [f"{name} = {target}" for name, target in eps.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    monkeypatch.syspath_prepend(str(PLUGIN))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    sys.modules.pop("subgen_echo_agent", None)


def test_third_party_agent_is_found_through_its_entry_point(plugin_on_path, rules, graphs):
    assert registry()["echo"] == "subgen_echo_agent:EchoAgent"
    assert "echo" not in BUILTIN
    agent = get_agent("echo", alpha=1.1)
    assert type(agent).__module__ == "subgen_echo_agent"
    res = agent.search(SearchProblem(graphs["toy"], rules, get_cost_model("analytic")), 10)
    assert res.graph is graphs["toy"] and res.cost == res.initial_cost


def test_agent_absent_without_its_entry_point():
    assert "echo" not in registry()


def test_search_agents_act_greedily_on_the_estimated_reward():
    import numpy as np
    agent = get_agent("taso")
    obs = {"cand_delta": np.array([0.5, 2.0, 3.0, 0.0], np.float32)}
    assert agent.act(obs, np.array([1, 1, 0, 0, 1], np.int8)) == 1   # 2 is masked out
    assert agent.act({"cand_delta": np.array([-1.0, 0.0], np.float32)},
                     np.array([1, 1, 1], np.int8)) == 2              # nothing improves: stop
    rnd = get_agent("random", seed=0)
    picks = {rnd.act(obs, np.array([1, 0, 1, 0, 1], np.int8)) for _ in range(50)}
    assert picks <= {0, 2, 4} and len(picks) > 1


def test_search_agents_drive_the_env(rules):
    """Greedy on cand_delta in the Gymnasium env never makes the graph more expensive."""
    gym = pytest.importorskip("gymnasium")
    import envcore.gym.env  # noqa: F401  (registers subgen/GraphRewrite-v0)
    env = gym.make("subgen/GraphRewrite-v0", model=zoo.build("toy", "tiny"), rules=rules,
                   cost="analytic", max_candidates=64, max_steps=10)
    obs, info = env.reset(seed=0)
    agent, first = get_agent("greedy"), info["cost"]
    for _ in range(10):
        obs, reward, term, trunc, info = env.step(agent.act(obs, env.unwrapped.action_masks()))
        if term or trunc:
            break
    assert info["cost"] < first
