"""From the zoo to proved rules to an optimized ONNX file, in one page."""
from envcore.execute import equivalent
from envcore.cost import get_cost_model
from envcore.onnx.exporter import save_onnx
from envcore.rewrite.rule import Rule
from envcore.graph import GraphBuilder
from envcore.zoo import build
from subgen.pipelines.optimize import load_rule_set, optimize
from verifier import verify_rule

# 1. a rule is data: relu after a conv is the conv with relu fused, proved from the axioms
def side(fused):
    b = GraphBuilder()
    x, w = b.input("x", (2, 4, 4, 4)), b.input("w", (4, 4, 3, 3))
    y = b.add("conv2d", x, w, activation="relu") if fused else b.add("relu", b.add("conv2d", x, w))
    return b.build([y])
fuse = Rule("fuse-conv-relu", side(False), side(True))
print(fuse.name, verify_rule(fuse).status, verify_rule(fuse).axioms)

# 2. the shipped, proved rule set (both directions), a zoo model and a cost model
rules = load_rule_set()                       # subgen/data/rules.db, proved rules only
model = build("squeezenet", size="full")
cost = get_cost_model("analytic")           # TASO's GPU (a V100); profile="cpu" models this machine
print(f"{len(rules)} rules; squeezenet costs {cost.graph_cost(model):.3f} ms")

# 3. TASO's backtracking search, checked numerically against the original
res = optimize(model, rules=rules, agent="taso", budget=200, device="v100")
print(f"{res.cost_before:.3f} -> {res.cost_after:.3f} ms ({res.speedup:.2f}x), "
      f"{len(res.rewrites)} rewrites, equivalent={res.equivalent}")
save_onnx(res.graph, "/tmp/squeezenet-opt.onnx")
