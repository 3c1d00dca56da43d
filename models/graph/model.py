"""Account-detection GNNs of the MGTAB benchmark (Shi et al., 2023), each with a bot head and a stance head.

All models take ``(x [N, 788], edge_index [2, E], edge_type [E])`` and return ``(bot_logits [N, 2],
stance_logits [N, 3])``. One trunk, two heads: the MGTAB paper trains one model per task; we train both
tasks at once (half the CPU) and pick each head's epoch on its own validation score (see train.py).

- :class:`MLP` — features only.
- :class:`GCN`, :class:`GAT` — PyG's GCNConv / GATConv on the union of the 7 relations (types ignored).
- :class:`RGCN` — input projection, two PyG ``RGCNConv`` (mean per relation + root weight).
- :class:`BotRGCN` — Feng et al., 2021: tweet cols -> 3H/4, numeric props -> H/8, categorical props -> H/8,
  concat, Linear + LeakyReLU, RGCNConv twice, Linear + LeakyReLU, heads.
- :class:`RGT` — Feng et al., 2022: per relation a TransformerConv, gated with the node's own state;
  semantic attention over the relations.

:class:`ServedEncoder` is BotRGCN's per-node input block (no edges), exported to ONNX: a replica hosting a
graph snapshot encodes every account once, and a query runs only the two relational layers (numpy / scipy,
models/graph/serving.py) and the heads over its 2-hop computation subgraph; models/graph/export.py checks
parity end to end against the PyG model.
"""
import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.nn import GATConv, GCNConv, RGCNConv, TransformerConv

from .synth import N_FEATURES, N_NUMERIC, N_PROFILE

N_RELATIONS = 7


class Heads(nn.Module):
    def __init__(self, hidden: int):
        super().__init__()
        self.bot, self.stance = nn.Linear(hidden, 2), nn.Linear(hidden, 3)

    def forward(self, h):
        return self.bot(h), self.stance(h)


class MLP(nn.Module):
    """Feature-only baseline: two hidden layers, LeakyReLU, dropout."""

    def __init__(self, hidden: int = 64, dropout: float = 0.3):
        super().__init__()
        self.hidden, self.dropout = hidden, dropout
        self.l1, self.l2, self.heads = nn.Linear(N_FEATURES, hidden), nn.Linear(hidden, hidden), Heads(hidden)

    def forward(self, x, edge_index=None, edge_type=None):
        h = F.dropout(F.leaky_relu(self.l1(x)), self.dropout, self.training)
        h = F.dropout(F.leaky_relu(self.l2(h)), self.dropout, self.training)
        return self.heads(h)

    def __repr__(self):
        return f"{type(self).__name__}(hidden={self.hidden})"


class _Homogeneous(MLP):
    """Input Linear, two convolutions on the union of relations, heads."""

    def make_conv(self, hidden):
        raise NotImplementedError

    def __init__(self, hidden: int = 64, dropout: float = 0.3):
        super().__init__(hidden, dropout)
        self.c1, self.c2 = self.make_conv(hidden), self.make_conv(hidden)

    def forward(self, x, edge_index, edge_type=None):
        h = F.dropout(F.leaky_relu(self.l1(x)), self.dropout, self.training)
        h = F.dropout(F.leaky_relu(self.c1(h, edge_index)), self.dropout, self.training)
        h = self.c2(h, edge_index)
        return self.heads(F.leaky_relu(h))


class GCN(_Homogeneous):
    def make_conv(self, hidden):
        return GCNConv(hidden, hidden, cached=True)  # full-batch transductive: normalise once


class GAT(_Homogeneous):
    def make_conv(self, hidden):
        return GATConv(hidden, hidden // 4, heads=4, add_self_loops=True)


class RGCN(MLP):
    def __init__(self, hidden: int = 64, dropout: float = 0.3):
        super().__init__(hidden, dropout)
        self.c1, self.c2 = RGCNConv(hidden, hidden, N_RELATIONS), RGCNConv(hidden, hidden, N_RELATIONS)

    def forward(self, x, edge_index, edge_type):
        h = F.dropout(F.leaky_relu(self.l1(x)), self.dropout, self.training)
        h = F.dropout(F.leaky_relu(self.c1(h, edge_index, edge_type)), self.dropout, self.training)
        return self.heads(F.leaky_relu(self.c2(h, edge_index, edge_type)))


class BotEncoder(nn.Module):
    """BotRGCN's per-node input block: tweet -> 3H/4, numeric -> H/8, categorical -> H/8, concat, Linear."""

    def __init__(self, hidden: int):
        super().__init__()
        q = hidden // 8
        self.text = nn.Linear(N_FEATURES - N_PROFILE, hidden - 2 * q)
        self.num = nn.Linear(N_NUMERIC, q)
        self.cat = nn.Linear(N_PROFILE - N_NUMERIC, q)
        self.mix = nn.Linear(hidden, hidden)

    def forward(self, x):
        a = F.leaky_relu(self.text(x[:, N_PROFILE:]))
        b = F.leaky_relu(self.num(x[:, :N_NUMERIC]))
        c = F.leaky_relu(self.cat(x[:, N_NUMERIC:N_PROFILE]))
        return F.leaky_relu(self.mix(torch.cat([a, b, c], dim=1)))


class BotRGCN(nn.Module):
    def __init__(self, hidden: int = 64, dropout: float = 0.3):
        super().__init__()
        self.hidden, self.dropout = hidden, dropout
        self.encoder = BotEncoder(hidden)
        self.c1, self.c2 = RGCNConv(hidden, hidden, N_RELATIONS), RGCNConv(hidden, hidden, N_RELATIONS)
        self.out = nn.Linear(hidden, hidden)
        self.heads = Heads(hidden)

    def forward(self, x, edge_index, edge_type):
        h = F.dropout(self.encoder(x), self.dropout, self.training)
        h = self.c1(h, edge_index, edge_type)
        h = F.dropout(h, self.dropout, self.training)
        h = self.c2(h, edge_index, edge_type)
        return self.heads(F.dropout(F.leaky_relu(self.out(h)), self.dropout, self.training))

    def __repr__(self):
        return f"BotRGCN(hidden={self.hidden}, relations={N_RELATIONS})"


class RGTLayer(nn.Module):
    """One RGT layer: per relation r, u_r = TransformerConv_r(h); gate a_r = σ(W[u_r ‖ h]);
    v_r = tanh(u_r)·a_r + h·(1 − a_r); semantic attention β_r = softmax_r(mean_i q·tanh(W_s v_r,i)); out Σ β_r v_r."""

    def __init__(self, hidden: int, heads: int = 2, semantic: int = 32):
        super().__init__()
        self.convs = nn.ModuleList(TransformerConv(hidden, hidden // heads, heads=heads) for _ in range(N_RELATIONS))
        self.gate = nn.Linear(2 * hidden, hidden)
        self.sem = nn.Linear(hidden, semantic)
        self.q = nn.Parameter(torch.randn(semantic) / semantic**0.5)

    def forward(self, h, edge_index, edge_type):
        vs = []
        for r, conv in enumerate(self.convs):
            u = conv(h, edge_index[:, edge_type == r])
            a = torch.sigmoid(self.gate(torch.cat([u, h], dim=1)))
            vs.append(torch.tanh(u) * a + h * (1 - a))
        v = torch.stack(vs)  # [R, N, H]
        beta = torch.softmax((torch.tanh(self.sem(v)) @ self.q).mean(dim=1), dim=0)  # [R]
        return (beta[:, None, None] * v).sum(0)


class RGT(MLP):
    def __init__(self, hidden: int = 64, dropout: float = 0.3):
        super().__init__(hidden, dropout)
        self.c1, self.c2 = RGTLayer(hidden), RGTLayer(hidden)

    def forward(self, x, edge_index, edge_type):
        h = F.dropout(F.leaky_relu(self.l1(x)), self.dropout, self.training)
        h = F.dropout(self.c1(h, edge_index, edge_type), self.dropout, self.training)
        return self.heads(F.leaky_relu(self.c2(h, edge_index, edge_type)))


MODELS = {"MLP": MLP, "GCN": GCN, "GAT": GAT, "RGCN": RGCN, "BotRGCN": BotRGCN, "RGT": RGT}


# ---------------------------------------------------------------- served form


class ServedEncoder(nn.Module):
    def __init__(self, encoder: BotEncoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, x):
        return self.encoder(x)
