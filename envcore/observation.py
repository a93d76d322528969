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


def build_observation(graph: Graph, candidates, node_cost, cand_delta, *, max_nodes: int,
                      max_edges: int, max_candidates: int, max_members: int) -> tuple[dict, bool]:
    """The padded observation, and whether the graph had to be cut to fit (overflow).
    `candidates` are Matches; `node_cost(id)` and `cand_delta(k, match)` give the cost features."""
    ids = sorted(graph.nodes)[:max_nodes]
    row = {i: k for k, i in enumerate(ids)}
    overflow = len(ids) < len(graph.nodes)
    x = np.zeros((max_nodes, NODE_DIM), np.float32)
    src, dst, eattr = [], [], []
    for k, i in enumerate(ids):
        n = graph.nodes[i]
        x[k, OP_INDEX[n.op]] = 1.0
        s = n.shapes[0] if n.shapes else ()
        ld = _log_dims(s)
        x[k, len(OPS):len(OPS) + len(ld)] = ld
        x[k, -3:] = (len(s), len(n.shapes), node_cost(i))
        for r in n.inputs:
            if r.node in row:
                src.append(row[r.node])
                dst.append(k)
                t = graph.nodes[r.node].shapes[r.index]
                eattr.append((t, r.index))
    if len(src) > max_edges:
        overflow = True
        src, dst, eattr = src[:max_edges], dst[:max_edges], eattr[:max_edges]
    e = len(src)
    edge_index = np.zeros((2, max_edges), np.int64)
    edge_index[0, :e], edge_index[1, :e] = src, dst
    edge_attr = np.zeros((max_edges, EDGE_DIM), np.float32)
    for j, (t, idx) in enumerate(eattr):
        ld = _log_dims(t)
        edge_attr[j, :len(ld)] = ld
        edge_attr[j, -2:] = (idx, len(t))

    c = min(len(candidates), max_candidates)
    cand_rule = np.full(max_candidates, -1, np.int64)
    cand_nodes = np.full((max_candidates, max_members), -1, np.int64)
    delta = np.zeros(max_candidates, np.float32)
    for k, m in enumerate(candidates[:c]):
        cand_rule[k] = m.rule_index
        members = sorted(row[g] for g in m.mapping.values() if g in row)[:max_members]
        cand_nodes[k, :len(members)] = members
        delta[k] = cand_delta(k, m)
    mask = np.zeros(max_candidates + 1, np.int8)
    mask[:c] = 1
    mask[-1] = 1
    obs = {"x": x, "edge_index": edge_index, "edge_attr": edge_attr,
           "num_nodes": np.array([len(ids)], np.int64), "num_edges": np.array([e], np.int64),
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
