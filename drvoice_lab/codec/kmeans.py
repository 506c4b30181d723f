"""k-means for the codec's codebook (torch): k-means++ seeding, then Lloyd iterations."""

from __future__ import annotations

import torch
from tqdm.auto import tqdm


def kmeans(
    x: torch.Tensor, k: int, iters: int = 20, seed: int = 0, progress: bool = True
) -> torch.Tensor:
    """(N, D) -> (k, D) centroids: k-means++ init on a subsample, then Lloyd iterations.

    Empty clusters are re-seeded with the points farthest from their centroid.
    """
    gen = torch.Generator().manual_seed(seed)
    if len(x) < k:
        raise ValueError(f"k-means needs at least k={k} points, got {len(x)}")
    centroids = _kmeans_pp(x[torch.randperm(len(x), generator=gen)[: 20 * k]], k, gen)
    for _ in tqdm(range(iters), desc=f"k-means K={k}", disable=not progress):
        assign = _assign(x, centroids)  # (N,)
        sums = torch.zeros_like(centroids).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k).to(x.dtype)
        empty = counts == 0
        centroids = torch.where(empty[:, None], centroids, sums / counts.clamp_min(1)[:, None])
        if empty.any():
            err = ((x - centroids[assign]) ** 2).sum(1)
            centroids[empty] = x[err.topk(int(empty.sum())).indices]
    return centroids


def _assign(x: torch.Tensor, centroids: torch.Tensor, batch: int = 8192) -> torch.Tensor:
    """(N, D), (K, D) -> (N,) index of the nearest centroid."""
    c_sq = (centroids**2).sum(1)
    return torch.cat([(c_sq - 2 * xb @ centroids.T).argmin(1) for xb in x.split(batch)])


def _kmeans_pp(x: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    """k-means++ seeding: each new centre drawn with probability ~ squared distance."""
    centres = [x[torch.randint(len(x), (1,), generator=gen)].squeeze(0)]
    dist = ((x - centres[0]) ** 2).sum(1)
    for _ in range(1, k):
        idx = torch.multinomial(dist.clamp_min(1e-12), 1, generator=gen)
        centres.append(x[idx].squeeze(0))
        dist = torch.minimum(dist, ((x - centres[-1]) ** 2).sum(1))
    return torch.stack(centres)
