"""The environment's observation: a Dict of padded numpy arrays, and its torch_geometric view.

Keys (N = max_nodes, E = max_edges, C = max_candidates, K = most source nodes of any rule):
  x            (N, NODE_DIM) float32   op one-hot (catalogue order), log2(1+dim) of the first
                                        output's shape (MAX_RANK slots), rank, outputs, op cost
                                        as a percentage of the initial graph cost
  edge_index   (2, E) int64            [producer row; consumer row] into x
  edge_attr    (E, EDGE_DIM) float32   log2(1+dim) of the tensor's shape, its output index, rank
  num_nodes, num_edges, num_candidates (1,) int64
  cand_rule    (C,) int64              rule index of candidate k (-1: padding)
  cand_nodes   (C, K) int64            rows of x the candidate rewrites (-1: padding)
  cand_delta   (C,) float32            the candidate's local cost change, in reward units
  action_mask  (C + 1,) int8           valid actions; the last one is "stop"
Rows of x follow increasing node id, so the same graph gives the same observation.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from envcore.graph import Graph
from envcore.ops import OPS

OP_INDEX = {name: k for k, name in enumerate(OPS)}
MAX_RANK = 6
NODE_DIM = len(OPS) + MAX_RANK + 3
EDGE_DIM = MAX_RANK + 2


def _log_dims(shape) -> list[float]:
    return [math.log2(1 + d) for d in shape[:MAX_RANK]]


def observation_space(max_nodes: int, max_edges: int, max_candidates: int, max_members: int,
                      num_rules: int):
    from gymnasium import spaces
    f32, i64 = np.float32, np.int64
    big = float(np.finfo(np.float32).max)   # finite bounds: features are logs and percentages

    def box(shape, low, high, dtype):
        return spaces.Box(low=low, high=high, shape=shape, dtype=dtype)

    return spaces.Dict({
        "x": box((max_nodes, NODE_DIM), -big, big, f32),
        "edge_index": box((2, max_edges), 0, max(max_nodes - 1, 0), i64),
        "edge_attr": box((max_edges, EDGE_DIM), -big, big, f32),
        "num_nodes": box((1,), 0, max_nodes, i64),
        "num_edges": box((1,), 0, max_edges, i64),
        "num_candidates": box((1,), 0, max_candidates, i64),
        "cand_rule": box((max_candidates,), -1, max(num_rules - 1, 0), i64),
        "cand_nodes": box((max_candidates, max_members), -1, max(max_nodes - 1, 0), i64),
        "cand_delta": box((max_candidates,), -big, big, f32),
        "action_mask": box((max_candidates + 1,), 0, 1, np.int8),
    })


class _NodeRows(NamedTuple):
    node: object              # the Node these rows describe (identity marks them stale)
    x: np.ndarray             # (NODE_DIM,) without the cost column
    producers: np.ndarray     # (k,) ids of the nodes feeding its k inputs
    edge_attr: np.ndarray     # (k, EDGE_DIM)


class ObservationBuilder:
    """Builds observations, reusing each node's rows while the node object lives: a rewrite
    changes a few nodes, so a step costs little more than stacking cached rows."""

    def __init__(self, *, max_nodes: int, max_edges: int, max_candidates: int, max_members: int):
        self.max_nodes, self.max_edges = max_nodes, max_edges
        self.max_candidates, self.max_members = max_candidates, max_members
        self._rows: dict[int, _NodeRows] = {}

    def _node_rows(self, graph: Graph, i: int) -> _NodeRows:
        n = graph.nodes[i]
        hit = self._rows.get(i)
        if hit is not None and hit.node is n:
            return hit
        x = np.zeros(NODE_DIM, np.float32)
        x[OP_INDEX[n.op]] = 1.0
        s = n.shapes[0] if n.shapes else ()
        ld = _log_dims(s)
        x[len(OPS):len(OPS) + len(ld)] = ld
        x[-3:-1] = (len(s), len(n.shapes))
        ea = np.zeros((len(n.inputs), EDGE_DIM), np.float32)
        for j, r in enumerate(n.inputs):
            t = graph.nodes[r.node].shapes[r.index]
            ld = _log_dims(t)
            ea[j, :len(ld)] = ld
            ea[j, -2:] = (r.index, len(t))
        hit = _NodeRows(n, x, np.array([r.node for r in n.inputs], np.int64), ea)
        self._rows[i] = hit
        return hit

    def __call__(self, graph: Graph, candidates, node_cost, cand_delta) -> tuple[dict, bool]:
        """The padded observation, and whether the graph had to be cut to fit (overflow).
        `candidates` are Matches; `node_cost(id)` and `cand_delta(k, match)` give the cost
        features."""
        if len(self._rows) > 2 * len(graph.nodes) + 1024:      # forget nodes long gone
            self._rows = {i: r for i, r in self._rows.items() if i in graph.nodes}
        all_ids = sorted(graph.nodes)
        ids = np.array(all_ids[:self.max_nodes], np.int64)
        n = len(ids)
        overflow = n < len(all_ids)
        rows = [self._node_rows(graph, int(i)) for i in ids]
        x = np.zeros((self.max_nodes, NODE_DIM), np.float32)
        if n:
            x[:n] = np.stack([r.x for r in rows])
            x[:n, -1] = [node_cost(int(i)) for i in ids]
        producers = np.concatenate([r.producers for r in rows] or [np.zeros(0, np.int64)])
        consumers = np.repeat(np.arange(n), [len(r.producers) for r in rows])
        eattr = np.concatenate([r.edge_attr for r in rows] or [np.zeros((0, EDGE_DIM))])
        pos = np.searchsorted(ids, producers)
        inside = (pos < n) & (ids[np.minimum(pos, max(n - 1, 0))] == producers) if n else \
            np.zeros(0, bool)
        src, dst, eattr = pos[inside], consumers[inside], eattr[inside]
        if len(src) > self.max_edges:
            overflow = True
            src, dst, eattr = src[:self.max_edges], dst[:self.max_edges], eattr[:self.max_edges]
        e = len(src)
        edge_index = np.zeros((2, self.max_edges), np.int64)
        edge_index[0, :e], edge_index[1, :e] = src, dst
        edge_attr = np.zeros((self.max_edges, EDGE_DIM), np.float32)
        edge_attr[:e] = eattr

        cmax, kmax = self.max_candidates, self.max_members
        c = min(len(candidates), cmax)
        cand_rule = np.full(cmax, -1, np.int64)
        cand_nodes = np.full((cmax, kmax), -1, np.int64)
        delta = np.zeros(cmax, np.float32)
        row = dict(zip(all_ids[:n], range(n)))
        for k, m in enumerate(candidates[:c]):
            cand_rule[k] = m.rule_index
            members = sorted(row[g] for g in m.mapping.values() if g in row)[:kmax]
            cand_nodes[k, :len(members)] = members
            delta[k] = cand_delta(k, m)
        mask = np.zeros(cmax + 1, np.int8)
        mask[:c] = 1
        mask[-1] = 1
        obs = {"x": x, "edge_index": edge_index, "edge_attr": edge_attr,
               "num_nodes": np.array([n], np.int64), "num_edges": np.array([e], np.int64),
               "num_candidates": np.array([c], np.int64), "cand_rule": cand_rule,
               "cand_nodes": cand_nodes, "cand_delta": delta, "action_mask": mask}
        return obs, overflow


def to_pyg_data(obs: dict):
    """A torch_geometric Data over the valid part of one observation.  Tensors are views of the
    observation's arrays (torch.from_numpy on slices): no copies, so do not mutate the obs."""
    import torch
    from torch_geometric.data import Data
    n, e, c = (int(np.asarray(obs[k]).reshape(-1)[0])
               for k in ("num_nodes", "num_edges", "num_candidates"))
    return Data(x=torch.from_numpy(obs["x"][:n]),
                edge_index=torch.from_numpy(obs["edge_index"][:, :e]),
                edge_attr=torch.from_numpy(obs["edge_attr"][:e]),
                cand_rule=torch.from_numpy(obs["cand_rule"][:c]),
                cand_nodes=torch.from_numpy(obs["cand_nodes"][:c]),
                cand_delta=torch.from_numpy(obs["cand_delta"][:c]),
                num_nodes=n)
