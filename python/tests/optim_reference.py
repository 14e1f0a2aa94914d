"""NumPy float64 reference implementations of every optimizer update formula of fnl.optim.

Deliberately naive: W is formed explicitly for Frobenius decay, every formula is written out
as in the docstrings (and papers), nothing is fused. The test oracle for test_optim*.py.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np


def chain_product(mats: Sequence[np.ndarray], r: int) -> np.ndarray:
    """M_1 ... M_d (the r x r identity when empty)."""
    out = np.eye(r)
    for m in mats:
        out = out @ m
    return out


def fd_grads(U: np.ndarray, V: np.ndarray, middle: Sequence[np.ndarray], lam: float) -> List[np.ndarray]:
    """Gradients of (lam/2) ||U M_1..M_d V^T||_F^2 w.r.t. U, V, M_1..M_d, with W formed in
    float64 (batched when U is 3-D: the penalty sums over the batch)."""
    if U.ndim == 3:
        per = [fd_grads(U[b], V[b], [m[b] for m in middle], lam) for b in range(U.shape[0])]
        return [np.stack([p[k] for p in per]) for k in range(2 + len(middle))]
    U, V = U.astype(np.float64), V.astype(np.float64)
    mids = [m.astype(np.float64) for m in middle]
    M = chain_product(mids, U.shape[1])
    W = U @ M @ V.T
    dU = lam * W @ V @ M.T
    dV = lam * W.T @ U @ M
    dM = []
    for j in range(len(mids)):
        left = U @ chain_product(mids[:j], U.shape[1])                         # m x r_{j-1}
        right = chain_product(mids[j + 1:], mids[j].shape[1]) @ V.T            # r_j x n
        dM.append(lam * left.T @ W @ right.T)
    return [dU, dV] + dM


def product_norm(U, V, middle) -> float:
    U = np.asarray(U, np.float64)
    if U.ndim == 3:
        return float(np.sqrt(sum(product_norm(U[b], V[b], [m[b] for m in middle]) ** 2 for b in range(U.shape[0]))))
    W = U @ chain_product([np.asarray(m, np.float64) for m in middle], U.shape[1]) @ np.asarray(V, np.float64).T
    return float(np.linalg.norm(W))


class RefModel:
    """float64 copies of a parameter group: values, and factor groups as index tuples
    (iU, iV, [iM...], rate)."""

    def __init__(self, params: Sequence, factor_groups: Sequence = ()):
        self.w = [np.array(p.data, dtype=np.float64) for p in params]
        index = {id(p): i for i, p in enumerate(params)}
        self.groups = []
        for fg in factor_groups:
            self.groups.append((index[id(fg.U)], index[id(fg.V)], [index[id(m)] for m in fg.middle],
                                fg.factorized_params / fg.dense_params))

    def members(self):
        out = {}
        for k, (u, v, mids, rate) in enumerate(self.groups):
            for i in [u, v, *mids]:
                out[i] = (k, rate)
        return out

    def decay_terms(self, policy: str, wd: float) -> List[np.ndarray]:
        """D_i for every tensor under a decay policy (see fnl.optim._groups)."""
        members = self.members()
        D = []
        for i, w in enumerate(self.w):
            if policy == "weight":
                D.append(wd * w)
            elif policy == "crs":
                D.append(wd * (members[i][1] if i in members else 1.0) * w)
            elif policy == "frobenius":
                D.append(np.zeros_like(w) if i in members else wd * w)
            else:
                D.append(np.zeros_like(w))
        if policy == "frobenius":
            for u, v, mids, _ in self.groups:
                grads = fd_grads(self.w[u], self.w[v], [self.w[j] for j in mids], wd)
                for i, gi in zip([u, v, *mids], grads):
                    D[i] = gi
        return D

    def norms(self) -> np.ndarray:
        return np.array([product_norm(self.w[u], self.w[v], [self.w[j] for j in mids])
                         for u, v, mids, _ in self.groups])

    def norm_match(self, targets) -> None:
        """Rescales each product's factors by (target / current)^(1 / (d + 2)) (unchanged at norm 0)."""
        for (u, v, mids, _), tau, cur in zip(self.groups, targets, self.norms()):
            if cur == 0:
                continue
            s = (tau / cur) ** (1.0 / (len(mids) + 2))
            for i in [u, v, *mids]:
                self.w[i] = self.w[i] * s


class RefSGD:
    """torch.optim.SGD semantics with the decay term added before momentum."""

    def __init__(self, model: RefModel, lr, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0,
                 decay="weight", trajectory=None):
        self.m, self.lr, self.mu, self.damp, self.nesterov = model, lr, momentum, dampening, nesterov
        self.wd, self.decay, self.traj = weight_decay, decay, trajectory
        self.buf: Optional[List[np.ndarray]] = None
        self.t = 0

    def step(self, grads: Sequence[np.ndarray]) -> None:
        D = self.m.decay_terms(self.decay, self.wd)
        d = [np.asarray(g, np.float64) + Di for g, Di in zip(grads, D)]
        if self.mu != 0:
            if self.buf is None:
                self.buf = [x.copy() for x in d]
            else:
                self.buf = [self.mu * b + (1 - self.damp) * x for b, x in zip(self.buf, d)]
            d = [x + self.mu * b for x, b in zip(d, self.buf)] if self.nesterov else list(self.buf)
        self.m.w = [w - self.lr * x for w, x in zip(self.m.w, d)]
        if self.decay == "norm_matching":
            self.m.norm_match(self.traj[self.t])
        self.t += 1


class RefAdamBase:
    def __init__(self, model: RefModel, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decay="weight"):
        self.m, self.lr, self.b1, self.b2, self.eps = model, lr, betas[0], betas[1], eps
        self.wd, self.decay = weight_decay, decay
        self.exp_avg = [np.zeros_like(w) for w in model.w]
        self.exp_avg_sq = [np.zeros_like(w) for w in model.w]
        self.t = 0

    def direction(self, grads) -> List[np.ndarray]:
        """m_hat / (sqrt(v_hat) + eps) after updating the moments."""
        self.t += 1
        out = []
        for i, g in enumerate(grads):
            g = np.asarray(g, np.float64)
            self.exp_avg[i] = self.b1 * self.exp_avg[i] + (1 - self.b1) * g
            self.exp_avg_sq[i] = self.b2 * self.exp_avg_sq[i] + (1 - self.b2) * g * g
            m_hat = self.exp_avg[i] / (1 - self.b1 ** self.t)
            v_hat = self.exp_avg_sq[i] / (1 - self.b2 ** self.t)
            out.append(m_hat / (np.sqrt(v_hat) + self.eps))
        return out


class RefAdamW(RefAdamBase):
    """w -= lr (r + D) with decoupled D."""

    def step(self, grads) -> None:
        D = self.m.decay_terms(self.decay, self.wd)
        r = self.direction(grads)
        self.m.w = [w - self.lr * (ri + Di) for w, ri, Di in zip(self.m.w, r, D)]


class RefLAMB(RefAdamBase):
    """u = r + D, trust = ||w|| / ||u|| (1 if either is 0), w -= lr trust u. FLAMBe is
    decay="frobenius"."""

    def step(self, grads) -> np.ndarray:
        D = self.m.decay_terms(self.decay, self.wd)
        r = self.direction(grads)
        trust = []
        new = []
        for w, ri, Di in zip(self.m.w, r, D):
            u = ri + Di
            wn, un = np.linalg.norm(w), np.linalg.norm(u)
            t = wn / un if wn > 0 and un > 0 else 1.0
            trust.append(t)
            new.append(w - self.lr * t * u)
        self.m.w = new
        return np.array(trust)
