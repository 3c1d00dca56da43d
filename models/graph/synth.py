"""A deterministic generator of an MGTAB-shaped account graph (MGTAB itself cannot be downloaded here).

**This is generated data, not MGTAB.** It copies MGTAB's *shape* (Shi et al., 2023, arXiv:2301.01123):
10,199 users; 788 features = 20 profile properties + a 768-d "tweet embedding"; 7 directed relations with
MGTAB's edge counts (followers 308,120, friends 412,575, mention 114,516, reply 223,466, quoted 77,631,
URL 263,800, hashtag 300,000); bot labels 73.06 % human / 26.94 % bot; stance 37 / 36 / 27 %.

How it is drawn (everything from one seed; sizes are parameters, so `scale=10` makes a graph 10x larger):

- Labels: exact class counts (a seeded permutation), stance drawn independently of the bot label.
- Coordinated bot groups: `group_fraction` of the bots split into `n_groups` groups of equal size (±1);
  a group shares a posting "template" (a direction in the text embedding) and links densely on the
  coordination relations (mention, quoted, URL, hashtag). Group id -1 = not in a group.
- Features: profile cols 0-9 numeric (log-counts, ratios; bots shifted by `signal`), cols 10-19 binary
  (verified, default image, ...; class-dependent rates); cols 20-787 the text embedding: unit noise plus a
  bot direction, a stance direction and the group template, each scaled by `signal`. Everything is weak
  on its own on purpose: a feature-only model stays well below the relation-aware ones, as on MGTAB.
- Edges, per relation r (degree-corrected SBM with relation- and class-specific homophily): the receiving
  node of each edge (edge_index[1]) is drawn with probability proportional to its in-propensity (log-normal,
  times a per-relation class multiplier: bots are followed less, reply less, share more URLs / hashtags);
  the sending node (edge_index[0]) is of the receiver's bot class with probability HOMOPHILY[r][class]
  (so bots are heterophilous on followers / friends — they follow humans — and homophilous on URL /
  hashtag / quoted), of the receiver's stance with probability STANCE_HOMOPHILY[r], and for a grouped
  bot receiver on a coordination relation a member of its own group with probability `group_density`;
  otherwise drawn by out-propensity. Self-loops and duplicate edges are dropped and redrawn, so each
  relation has exactly its edge count (scaled by `edge_scale`).

Two sweep axes (models/graph/sweep.py asks whether the models' ranking is built into the data; both default
to 1.0, which reproduces the tuned generator bit for bit): `homophily_scale` interpolates every HOMOPHILY[r]
towards the base rate (0: a sender's bot label is independent of its receiver's; the per-relation bot in-degree
multipliers, the stance homophily and the group links stay), and `bot_signal` scales the bot feature shift
(profile shift, binary rates, text direction) without touching the stance / group signals or `camouflage`.

Messages flow edge_index[0] -> edge_index[1] (PyG's default), so a node's incoming neighbours on relation r
are of its own class with probability HOMOPHILY[r][its class]: `homophily_by_class` measures exactly that.
"""
from dataclasses import asdict, dataclass, field

import numpy as np

RELATIONS = ("followers", "friends", "mention", "reply", "quoted", "url", "hashtag")
EDGE_COUNTS = (308_120, 412_575, 114_516, 223_466, 77_631, 263_800, 300_000)
N_USERS, N_PROFILE, N_TEXT = 10_199, 20, 768
N_FEATURES = N_PROFILE + N_TEXT
N_NUMERIC = 10  # profile cols 0..9 numeric, 10..19 binary ("categorical") — BotRGCN projects them separately
BOT_SHARE = 0.2694
STANCE_SHARES = (0.37, 0.36, 0.27)
# P(sender has the receiver's bot label), per relation, for (human, bot) receivers.
HOMOPHILY = {
    "followers": (0.90, 0.20), "friends": (0.88, 0.30), "mention": (0.88, 0.75), "reply": (0.90, 0.60),
    "quoted": (0.88, 0.88), "url": (0.86, 0.92), "hashtag": (0.87, 0.90),
}
STANCE_HOMOPHILY = {"followers": 0.4, "friends": 0.45, "mention": 0.5, "reply": 0.55, "quoted": 0.55, "url": 0.4, "hashtag": 0.45}
# In-degree multipliers for bot receivers (humans 1): "bots behave differently on some relations".
BOT_IN_DEGREE = {"followers": 0.35, "friends": 1.6, "mention": 0.6, "reply": 0.4, "quoted": 1.5, "url": 2.5, "hashtag": 2.0}
COORDINATION = ("mention", "quoted", "url", "hashtag")
DEGREE_SIGMA = 1.8  # log-normal in-propensity: heavy-tailed, many users with few incoming edges
# feature signal (times GraphConfig.signal); text noise has norm ~8 (std 0.29 per direction)
BOT_TEXT, STANCE_TEXT, GROUP_TEXT, PROFILE_SHIFT = 0.45, 0.5, 0.8, 0.6


@dataclass
class GraphConfig:
    n_users: int = N_USERS
    edge_scale: float = 1.0  # multiplies every relation's edge count (tests use ~0.02)
    signal: float = 1.0  # feature signal strength (1.0: feature-only models well below relation-aware ones)
    n_groups: int = 24
    group_fraction: float = 0.5  # share of bots in a coordinated group
    group_density: float = 0.6  # P(a grouped bot's same-class sender on a coordination relation is in its group)
    camouflage: float = 0.2  # share of bots whose features look human
    # Sweep axes (models/graph/sweep.py); 1.0 is the tuned generator, bit for bit.
    homophily_scale: float = 1.0  # bot-label homophily: 0 = sender's bot label independent of the receiver's
    bot_signal: float = 1.0  # scales the bot feature shift only (profile shift, binary rates, text direction)
    seed: int = 0
    edge_counts: tuple = field(default=EDGE_COUNTS)

    @classmethod
    def scaled(cls, scale: float, **kw) -> "GraphConfig":
        """A graph `scale` times larger in users and edges (same mean degree)."""
        return cls(n_users=int(round(N_USERS * scale)), edge_scale=scale, **kw)


def exact_labels(n: int, shares, rng: np.random.Generator) -> np.ndarray:
    """Labels 0..len(shares)-1 with counts round(share*n) (the last class takes the remainder), shuffled."""
    counts = [int(round(s * n)) for s in shares[:-1]]
    counts.append(n - sum(counts))
    return rng.permutation(np.repeat(np.arange(len(shares)), counts))


def _weighted_choice(pool: np.ndarray, cum: np.ndarray, k: int, rng) -> np.ndarray:
    """k draws from `pool` with weights whose cumulative sum is `cum`."""
    return pool[np.minimum(np.searchsorted(cum, rng.random(k) * cum[-1], side="right"), len(pool) - 1)]


class _Cells:
    """Nodes grouped by (bot, stance) and by bot, with cumulative out-propensity for fast weighted draws."""

    def __init__(self, bot, stance, weight):
        self.pools = {}
        for b in (0, 1):
            idx = np.flatnonzero(bot == b)
            self.pools[(b, None)] = (idx, np.cumsum(weight[idx]))
            for s in range(3):
                idx = np.flatnonzero((bot == b) & (stance == s))
                self.pools[(b, s)] = (idx, np.cumsum(weight[idx]))

    def draw(self, b: int, s, k: int, rng) -> np.ndarray:
        pool, cum = self.pools[(b, s)]
        return _weighted_choice(pool, cum, k, rng)


def bot_homophily(name: str, share: float, scale: float) -> np.ndarray:
    """P(sender has the receiver's bot label) for (human, bot) receivers on relation `name`: HOMOPHILY[name]
    interpolated towards the base rate (1 - share, share) — the value with no homophily at all, where a
    sender's label is independent of its receiver's. scale 1: HOMOPHILY exactly; 0: base rate; >1 extrapolates."""
    target, base = np.asarray(HOMOPHILY[name]), np.array([1 - share, share])
    return np.clip(scale * target + (1 - scale) * base, 0.0, 1.0)


def _relation_edges(r: int, name: str, count: int, bot, stance, group, members, in_w, out_w, cfg, rng) -> np.ndarray:
    n = len(bot)
    cells = _Cells(bot, stance, out_w)
    in_cum = np.cumsum(in_w)
    homophily = bot_homophily(name, float(bot.mean()), cfg.homophily_scale)
    have = np.zeros((2, 0), np.int64)
    while have.shape[1] < count:
        k = int((count - have.shape[1]) * 1.15) + 16
        dst = _weighted_choice(np.arange(n), in_cum, k, rng)
        same = rng.random(k) < homophily[bot[dst]]
        src_bot = np.where(same, bot[dst], 1 - bot[dst])
        same_stance = rng.random(k) < STANCE_HOMOPHILY[name]
        src = np.empty(k, np.int64)
        for b in (0, 1):
            for s in range(3):
                m = (src_bot == b) & same_stance & (stance[dst] == s)
                src[m] = cells.draw(b, s, int(m.sum()), rng)
            m = (src_bot == b) & ~same_stance
            src[m] = cells.draw(b, None, int(m.sum()), rng)
        if name in COORDINATION:  # grouped bot receivers hear from their own group
            m = same & (group[dst] >= 0) & (rng.random(k) < cfg.group_density)
            g = group[dst[m]]
            pick = (rng.random(int(m.sum())) * members["size"][g]).astype(np.int64)
            src[m] = members["flat"][members["start"][g] + pick]
        keep = src != dst
        edges = np.concatenate([have, np.stack([src[keep], dst[keep]])], axis=1)
        key = edges[0] * n + edges[1]
        _, first = np.unique(key, return_index=True)  # drop duplicates, keep draw order
        have = edges[:, np.sort(first)]
    return have[:, :count]


def generate(cfg: GraphConfig | None = None) -> dict:
    """The graph as numpy arrays: x [N, 788] float32, edge_index [2, E] int64, edge_type [E] int64,
    bot [N], stance [N], group [N] (-1 = none), account_id [N] int64, plus the config."""
    cfg = cfg or GraphConfig()
    rng = np.random.default_rng(cfg.seed)
    n = cfg.n_users
    bot = exact_labels(n, (1 - BOT_SHARE, BOT_SHARE), rng)
    stance = rng.permutation(exact_labels(n, STANCE_SHARES, rng))

    # coordinated groups among the bots
    bots = rng.permutation(np.flatnonzero(bot == 1))
    grouped = bots[: int(round(cfg.group_fraction * len(bots)))]
    group = np.full(n, -1, np.int64)
    if cfg.n_groups > 0 and len(grouped):
        group[grouped] = np.arange(len(grouped)) % cfg.n_groups
    order = np.argsort(group[grouped], kind="stable")
    flat = grouped[order]
    size = np.bincount(group[grouped], minlength=max(cfg.n_groups, 1))
    members = {"flat": flat, "size": size, "start": np.concatenate([[0], np.cumsum(size)[:-1]])}

    x = _features(bot, stance, group, cfg, rng)

    base_in = rng.lognormal(0.0, DEGREE_SIGMA, n)
    base_out = rng.lognormal(0.0, 1.0, n)
    edges, types = [], []
    for r, (name, count) in enumerate(zip(RELATIONS, cfg.edge_counts)):
        c = int(round(count * cfg.edge_scale))
        c = min(c, n * (n - 1) // 4)
        in_w = base_in * np.where(bot == 1, BOT_IN_DEGREE[name], 1.0)
        out_w = base_out * rng.lognormal(0.0, 0.3, n)
        e = _relation_edges(r, name, c, bot, stance, group, members, in_w, out_w, cfg, rng)
        edges.append(e)
        types.append(np.full(e.shape[1], r, np.int64))
    account_id = np.sort(rng.choice(np.iinfo(np.int32).max, size=n, replace=False).astype(np.int64)) + 10**9
    return {
        "x": x, "edge_index": np.concatenate(edges, axis=1), "edge_type": np.concatenate(types),
        "bot": bot.astype(np.int64), "stance": stance.astype(np.int64), "group": group,
        "account_id": account_id, "config": {**asdict(cfg), "edge_counts": list(cfg.edge_counts)},
    }


def _features(bot, stance, group, cfg: GraphConfig, rng) -> np.ndarray:
    n, s = len(bot), cfg.signal
    sb = s * cfg.bot_signal  # bot-specific shifts; stance and group signals keep `signal` alone
    x = np.empty((n, N_FEATURES), np.float32)
    # camouflaged bots carry no bot signal in their features (only their relations give them away)
    looks_bot = (bot == 1) & (rng.random(n) >= cfg.camouflage)
    # numeric profile properties: standardised log-counts; bots shifted on a few (weakly)
    shift = np.array([-0.35, 0.30, 0.25, -0.20, 0.30, 0.0, -0.15, 0.20, 0.0, 0.10]) * PROFILE_SHIFT * sb
    x[:, :N_NUMERIC] = rng.normal(size=(n, N_NUMERIC)) + looks_bot[:, None] * shift
    # binary profile properties: class-dependent rates
    p_human = rng.uniform(0.2, 0.6, N_PROFILE - N_NUMERIC)
    p_bot = np.clip(p_human + rng.choice([-1, 1], N_PROFILE - N_NUMERIC) * 0.08 * sb, 0.02, 0.98)
    p = np.where(looks_bot[:, None], p_bot, p_human)
    x[:, N_NUMERIC:N_PROFILE] = (rng.random((n, N_PROFILE - N_NUMERIC)) < p).astype(np.float32)
    # text embedding
    def unit(k):
        v = rng.normal(size=(k, N_TEXT))
        return v / np.linalg.norm(v, axis=1, keepdims=True)
    bot_dir, stance_dir = unit(1)[0], unit(3)
    templates = unit(max(cfg.n_groups, 1))
    text = rng.normal(size=(n, N_TEXT)) / np.sqrt(N_TEXT) * 8.0  # noise of norm ~8 per user
    text += (looks_bot[:, None] * 2 - 1) * bot_dir * BOT_TEXT * sb
    text += stance_dir[stance] * STANCE_TEXT * s
    g = group >= 0
    text[g] += templates[group[g]] * GROUP_TEXT * s
    x[:, N_PROFILE:] = text
    return x


def homophily_by_class(graph: dict, label: str = "bot") -> np.ndarray:
    """[relation, class]: fraction of edges into receivers of that class whose sender has the same label."""
    y, (src, dst), t = graph[label], graph["edge_index"], graph["edge_type"]
    k = int(y.max()) + 1
    out = np.full((len(RELATIONS), k), np.nan)
    for r in range(len(RELATIONS)):
        m = t == r
        for c in range(k):
            mc = m & (y[dst] == c)
            if mc.any():
                out[r, c] = float((y[src[mc]] == c).mean())
    return out


def split_masks(n: int, seed: int, fractions=(0.7, 0.2, 0.1)) -> dict[str, np.ndarray]:
    """MGTAB's protocol: a random 70 / 20 / 10 split of the users (train / validation / test), per seed."""
    order = np.random.default_rng(1000 + seed).permutation(n)
    a, b = int(round(fractions[0] * n)), int(round((fractions[0] + fractions[1]) * n))
    masks = {k: np.zeros(n, bool) for k in ("train", "val", "test")}
    masks["train"][order[:a]], masks["val"][order[a:b]], masks["test"][order[b:]] = True, True, True
    return masks


def save_snapshot(graph: dict, path) -> None:
    """The hosted-graph snapshot a `bot_detector` replica loads (npz, no pickle)."""
    np.savez_compressed(path, **{k: graph[k] for k in ("x", "edge_index", "edge_type", "account_id")})
