"""The graph encoder both RL agents share: node, candidate and graph embeddings.

A GINE network (Hu et al. 2020, https://arxiv.org/abs/1905.12265: GIN with edge features) runs
over the environment's observation.  Node features are the op one-hot, shapes and cost; edge
features are the tensor shapes.  Then

    node_emb  = GINE^L(x, edge_index, edge_attr)
    graph_emb = MLP([mean(node_emb), max(node_emb)])
    cand_emb  = MLP([mean(node_emb[matched]), max(node_emb[matched]), rule_emb[rule], delta])

where delta is the env's estimate of the candidate's local cost change (`cand_delta`).

A candidate is a (rule, location) pair; its location is the set of graph nodes the rule's source
pattern matched.  `RewriteData` carries that set as `cand_member_index` (row 0: candidate, row 1:
node), which batches like an edge index, so a whole batch of graphs is encoded in one pass.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch_geometric.data import Batch, Data
from torch_geometric.nn import GINEConv
from torch_geometric.utils import scatter


class RewriteData(Data):
    """A graph observation plus its candidates.

    x [N, F], edge_index [2, E], edge_attr [E, Fe]; cand_rule [K] (rule index per candidate);
    cand_delta [K] (local cost change); cand_member_index [2, P] (candidate k contains node n);
    cand_action [K] (the candidate's flat action index)."""

    def __inc__(self, key, value, *args, **kwargs):
        if key == "cand_member_index":
            return torch.tensor([[self.cand_rule.numel()], [self.num_nodes]])
        return super().__inc__(key, value, *args, **kwargs)

    def __cat_dim__(self, key, value, *args, **kwargs):
        if key == "cand_member_index":
            return -1
        return super().__cat_dim__(key, value, *args, **kwargs)


def collate(datas: list[RewriteData]) -> Batch:
    """One batch; `cand_rule_batch` says which graph each candidate belongs to."""
    return Batch.from_data_list(datas, follow_batch=["cand_rule"])


@dataclass
class Embeddings:
    nodes: torch.Tensor        # [N, H]
    graph: torch.Tensor        # [B, H]
    candidates: torch.Tensor   # [K, H] (all candidates of the batch, graph by graph)
    cand_graph: torch.Tensor   # [K] graph index of each candidate


def mlp(inp: int, hidden: int, out: int, layers: int = 2) -> nn.Sequential:
    mods: list[nn.Module] = []
    d = inp
    for _ in range(layers - 1):
        mods += [nn.Linear(d, hidden), nn.ReLU()]
        d = hidden
    mods.append(nn.Linear(d, out))
    return nn.Sequential(*mods)


class GraphEncoder(nn.Module):
    def __init__(self, node_dim: int, edge_dim: int, num_rules: int, hidden: int = 64,
                 layers: int = 3):
        super().__init__()
        self.hidden = hidden
        self.node_in = nn.Linear(node_dim, hidden)
        self.edge_in = nn.Linear(edge_dim, hidden)
        self.convs = nn.ModuleList(GINEConv(mlp(hidden, hidden, hidden), edge_dim=hidden)
                                   for _ in range(layers))
        self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(layers))
        self.rule_emb = nn.Embedding(max(num_rules, 1), hidden)
        self.graph_out = mlp(2 * hidden, hidden, hidden)
        self.cand_out = mlp(3 * hidden + 1, hidden, hidden)

    def forward(self, data: Batch | RewriteData) -> Embeddings:
        x = self.node_in(data.x)
        e = self.edge_in(data.edge_attr) if data.edge_attr.numel() else \
            data.edge_attr.new_zeros((0, self.hidden))
        for conv, norm in zip(self.convs, self.norms):
            x = norm(x + torch.relu(conv(x, data.edge_index, e)))   # residual keeps depth cheap
        batch = getattr(data, "batch", None)
        if batch is None:
            batch = x.new_zeros(x.size(0), dtype=torch.long)
        num_graphs = int(batch.max()) + 1 if batch.numel() else 1
        g = torch.cat([scatter(x, batch, 0, dim_size=num_graphs, reduce="mean"),
                       scatter(x, batch, 0, dim_size=num_graphs, reduce="max")], -1)
        graph = self.graph_out(g)

        k = data.cand_rule.numel()
        cand_graph = getattr(data, "cand_rule_batch", None)
        if cand_graph is None:
            cand_graph = data.cand_rule.new_zeros(k)
        cand_idx, node_idx = data.cand_member_index
        members = x[node_idx]
        pooled = torch.cat([scatter(members, cand_idx, 0, dim_size=k, reduce="mean"),
                            scatter(members, cand_idx, 0, dim_size=k, reduce="max")], -1)
        delta = data.cand_delta.float()[:, None] if hasattr(data, "cand_delta") else pooled[:, :1] * 0
        cands = self.cand_out(torch.cat([pooled, self.rule_emb(data.cand_rule), delta], -1))
        return Embeddings(x, graph, cands, cand_graph)


def synthetic_data(num_nodes: int, num_cands: int, node_dim: int = 8, edge_dim: int = 4,
                   num_rules: int = 5, seed: int = 0) -> RewriteData:
    """A random chain-with-skips graph with random candidates (for tests and smoke runs)."""
    rng = np.random.default_rng(seed)
    src = np.arange(num_nodes - 1)
    dst = src + 1
    edge_index = torch.tensor(np.stack([src, dst]), dtype=torch.long)
    members = [(k, n) for k in range(num_cands)
               for n in rng.choice(num_nodes, size=min(2, num_nodes), replace=False)]
    return RewriteData(
        x=torch.tensor(rng.normal(size=(num_nodes, node_dim)), dtype=torch.float32),
        edge_index=edge_index,
        edge_attr=torch.tensor(rng.normal(size=(num_nodes - 1, edge_dim)), dtype=torch.float32),
        cand_rule=torch.tensor(rng.integers(0, num_rules, num_cands), dtype=torch.long),
        cand_member_index=torch.tensor(np.array(members, dtype=np.int64).reshape(-1, 2).T,
                                       dtype=torch.long),
    )


# ------------------------------------------------------------------------------------------------
# the bridge from the environment's observation (a Dict of padded arrays) to RewriteData

def obs_to_data(obs) -> RewriteData:
    """The valid part of one padded observation (envcore.gym.observation) as RewriteData, built on
    `to_pyg_data`'s zero-copy views.  `cand_action` [K] is each candidate's index in the env's
    flat action space (the env lists candidates in the first K slots)."""
    if isinstance(obs, RewriteData):
        return obs
    from envcore.gym.observation import to_pyg_data
    d = to_pyg_data(obs)
    k = int(d.cand_rule.numel())
    cand, slot = (d.cand_nodes >= 0).nonzero(as_tuple=True)
    return RewriteData(x=d.x, edge_index=d.edge_index, edge_attr=d.edge_attr,
                       cand_rule=d.cand_rule, cand_delta=d.cand_delta,
                       cand_action=torch.arange(k, dtype=torch.long),
                       cand_member_index=torch.stack([cand, d.cand_nodes[cand, slot]]),
                       num_nodes=d.num_nodes)


def env_dims(env) -> tuple[int, int, int]:
    """(node feature size, edge feature size, number of rules) of an environment."""
    space = env.observation_space
    return (int(space["x"].shape[-1]), int(space["edge_attr"].shape[-1]),
            int(env.unwrapped.num_rules))
