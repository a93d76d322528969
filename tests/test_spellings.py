"""Spellings: the enumerator extends a representative's respellings, pairs them, and the pruning
recognises a subgraph shared by both sides up to normal form."""
from envcore.execute import equivalent
from envcore.graph import GraphBuilder
from envcore.rewrite.rule import Rule
from subgen.pairing.prune import canonical_key, generalizes


def _text(en, tid):
    t = en.terms[tid]
    if t.node is None:
        return t.name
    n = en.nodes[t.node]
    return f"{n.op}({','.join(_text(en, i) for i in n.inputs)})"


def _describe(en):
    from subgen.pairing.normal_form import NormalForms, term_describer
    return NormalForms(term_describer(en))


def test_only_respellings_of_a_representative_grow():
    """Every term used as an input is a representative or has its representative's normal
    form; and respellings do grow (x1+x0 is an input although x0+x1 came first)."""
    from subgen.enumeration.enumerator import Enumerator
    en = Enumerator(("ewadd", "ewmul", "matmul"), 3)
    en.run()
    nf = _describe(en)
    inputs = {i for n in en.nodes for i in n.inputs}
    for tid in inputs:
        rep = en.classes[en.terms[tid].fp][0]
        assert tid == rep or nf.of(tid) == nf.of(rep), _text(en, tid)
    texts = {_text(en, i) for i in inputs}
    assert "ewadd(x0,x1)" in texts and "ewadd(x1,x0)" in texts
    # only the representatives and respellings of up to `spellings` operators grow
    others = [t.id for t in en.terms if t.size > en.spellings and not en.is_rep(t)]
    assert others and not any(t in inputs for t in others)


def test_fused_activation_shares_the_normal_form_of_its_spelled_out_form():
    """conv2d[relu](x, k) and relu(conv2d(x, k)) are one normal form; enumerated terms that
    share a normal form have the same exact value (soundness, with fused activations)."""
    from subgen.enumeration.enumerator import Enumerator
    en = Enumerator(("conv2d", "relu", "ewadd"), 2)
    en.run()
    nf = _describe(en)
    fps: dict[str, set] = {}
    for t in en.terms:
        fps.setdefault(nf.of(t.id), set()).add(t.fp)
    assert all(len(v) == 1 for v in fps.values())
    def node(t):
        return None if t.node is None else en.nodes[t.node]

    fused = [t for t in en.terms if node(t) is not None and node(t).op == "conv2d"
             and dict(node(t).params)["activation"] == "relu"]
    spelled = [t for t in en.terms if node(t) is not None and node(t).op == "relu"
               and node(en.terms[node(t).inputs[0]]) is not None
               and node(en.terms[node(t).inputs[0]]).op == "conv2d"]
    assert fused and spelled
    assert {nf.of(t.id) for t in fused} & {nf.of(t.id) for t in spelled}


def _graph(build, shape=(2, 4)):
    b = GraphBuilder()
    xs = {}

    def x(name):
        if name not in xs:
            xs[name] = b.input(name, shape)
        return xs[name]
    return b.build([build(b, x)])


def test_a_subgraph_shared_up_to_reordering_makes_a_rule_smaller():
    # (a+b)+c => c+(b+a): a+b is on both sides up to commutativity; the rule is c-commuted
    src = _graph(lambda b, x: b.add("ewadd", b.add("ewadd", x("a"), x("b")), x("c")))
    dst = _graph(lambda b, x: b.add("ewadd", x("c"), b.add("ewadd", x("b"), x("a"))))
    assert equivalent(src, dst)[0] and generalizes(Rule("r", src, dst))
    # a+(a+(b+c)) => (b+a)+(c+a) shares no sum with its other side: a rule of its own
    src = _graph(lambda b, x: b.add("ewadd", x("a"), b.add("ewadd", x("a"), b.add(
        "ewadd", x("b"), x("c")))))
    dst = _graph(lambda b, x: b.add("ewadd", b.add("ewadd", x("b"), x("a")),
                                    b.add("ewadd", x("c"), x("a"))))
    assert equivalent(src, dst)[0] and not generalizes(Rule("r", src, dst))


def test_regrouped_chains_are_generated():
    """A rule between two respellings, neither of them the class's representative, is found
    (a+(a+(b+c)) => (b+a)+(c+a) on any pool variables)."""
    from subgen.pipelines.generate import Settings, find_candidates
    rules, _ = find_candidates(Settings(max_ops=3, ops=("ewadd",), verify=False))
    keys = {canonical_key(r, shapes=False) for r in rules}
    src = _graph(lambda b, x: b.add("ewadd", x("a"), b.add("ewadd", x("a"), b.add(
        "ewadd", x("b"), x("c")))))
    dst = _graph(lambda b, x: b.add("ewadd", b.add("ewadd", x("b"), x("a")),
                                    b.add("ewadd", x("c"), x("a"))))
    assert canonical_key(Rule("t", src, dst), shapes=False) in keys
    for r in rules:
        assert equivalent(r.src, r.dst)[0], r.name


def test_unions_of_respellings_meet_the_split():
    """{relu(conv(a, k)), conv[relu](b, k)} is a two-output graph beside
    split(conv[relu](concat(a, b), k)): one of its parts is a respelling."""
    from subgen.pairing.pairs import buckets
    from subgen.enumeration.enumerator import Enumerator
    en = Enumerator(("concat", "split", "relu", "conv2d"), 3)
    en.run()

    def op(tid):
        t = en.terms[tid]
        return "leaf" if t.node is None else en.nodes[t.node].op

    found = []
    for b in buckets(en).values():
        if any(len(g) == 2 and op(g[0]) == "split" for g in b):
            found += [g for g in b if len(g) == 2 and sorted(map(op, g)) == ["conv2d", "relu"]]
    assert found
    for g in found:   # the relu's input is a conv of its own: a spelled-apart fused conv
        relu = next(o for o in g if op(o) == "relu")
        assert op(en.nodes[en.terms[relu].node].inputs[0]) == "conv2d"
