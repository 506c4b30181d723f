"""Figures of the 5 Hz / 25 Hz analysis notebook (matplotlib, imported lazily)."""

from __future__ import annotations

from collections import Counter

import numpy as np


def plot_rates(stats: dict[str, np.ndarray]):
    """Histograms (log x) of text tokens per second and backbone positions per second."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.2))
    bins = np.logspace(np.log10(0.5), np.log10(40), 60)
    for name, values in stats.items():
        ax.hist(values, bins=bins, alpha=0.6, label=f"{name} (median {np.median(values):.1f})")
    ax.set_xscale("log")
    _label(ax, xlabel="per second of speech", ylabel="utterances", legend=8)
    fig.tight_layout()
    return fig


def plot_probe(results: dict[str, dict]):
    """Held-out token accuracy of the CTC probe per view."""
    import matplotlib.pyplot as plt

    names = list(results)
    fig, ax = plt.subplots(figsize=(6, 3))
    bars = ax.bar(names, [results[n]["token_accuracy"] for n in names],
                  color=["tab:blue", "tab:orange", "tab:green"][: len(names)])  # fmt: skip
    ax.bar_label(bars, fmt="%.2f")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("held-out token accuracy")
    ax.set_title("linear CTC probe: text tokens from each view")
    fig.tight_layout()
    return fig


def plot_similarity(matrices: dict[str, np.ndarray], labels: list[str]):
    """Cosine-similarity maps of one answer's 5 Hz positions, ticks = the word spoken there."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(matrices), figsize=(5.5 * len(matrices), 4.8))
    for ax, (name, m) in zip(np.atleast_1d(axes), matrices.items(), strict=True):
        image = ax.imshow(m, cmap="viridis", vmin=-1, vmax=1)
        ax.set_title(name)
        ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        fig.colorbar(image, ax=ax, shrink=0.8)
    fig.tight_layout()
    return fig


def plot_projection(points: dict[str, np.ndarray], words: list[str], top: int = 8):
    """2-D PCA of 5 Hz positions per view, coloured by the word spoken (the ``top`` most
    frequent words; other positions grey)."""
    import matplotlib.pyplot as plt

    common = [w for w, _ in Counter(w for w in words if w).most_common(top)]
    fig, axes = plt.subplots(1, len(points), figsize=(5.5 * len(points), 4.5))
    for ax, (name, xy) in zip(np.atleast_1d(axes), points.items(), strict=True):
        rest = np.array([w not in common for w in words])
        ax.scatter(xy[rest, 0], xy[rest, 1], s=4, color="0.8")
        for word in common:
            mask = np.array([w == word for w in words])
            ax.scatter(xy[mask, 0], xy[mask, 1], s=9, label=word)
        ax.set_title(name)
    np.atleast_1d(axes)[-1].legend(fontsize=8, markerscale=2, loc="center left",
                                   bbox_to_anchor=(1, 0.5))  # fmt: skip
    fig.tight_layout()
    return fig


def plot_attention(attention, segments: list[tuple[str, int, int]], layers=None):
    """Head-averaged backbone attention (query x key 5 Hz positions) for some layers, with the
    turn's segments (system prompt, user speech, answer) marked."""
    import matplotlib.pyplot as plt

    layers = layers or [0, attention.shape[0] // 2, attention.shape[0] - 1]
    fig, axes = plt.subplots(1, len(layers), figsize=(4.6 * len(layers), 4.4))
    for ax, layer in zip(np.atleast_1d(axes), layers, strict=True):
        ax.imshow(attention[layer].mean(0).numpy() ** 0.5, cmap="magma")  # sqrt: show the tail
        for name, start, end in segments:
            ax.axvline(start - 0.5, color="w", lw=0.6)
            ax.axhline(start - 0.5, color="w", lw=0.6)
            ax.text((start + end) / 2, -1.5, name, ha="center", fontsize=8)
        ax.set_title(f"layer {layer}", pad=14)
        ax.set_xlabel("key position (5 Hz)")
        ax.set_ylabel("query position")
    fig.tight_layout()
    return fig


def plot_cost_vs_k(rows: list[dict], seconds: float = 30.0):
    """Positions, FLOP ratio and measured prefill speed-up against k (resolution suite)."""
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.6))
    for i, backbone in enumerate(sorted({r["backbone"] for r in rows})):
        sel = sorted((r for r in rows if r["backbone"] == backbone
                      and float(r["seconds"]) == seconds), key=lambda r: int(r["k"]))  # fmt: skip
        ks = [int(r["k"]) for r in sel]
        if i == 0:  # positions depend on k only
            left.plot(ks, [int(r["positions"]) for r in sel], "o-", color="k")
        right.plot(ks, [float(r["flop_ratio"]) for r in sel], "--", label=f"{backbone}: FLOPs")
        right.plot(ks, [float(r["prefill_speedup"]) for r in sel], "o-",
                   label=f"{backbone}: measured prefill")  # fmt: skip
    _label(left, title=f"backbone positions for a {seconds:.0f} s spoken turn", xlabel="k")
    _label(right, title="speed-up over k = 1", xlabel="k", legend=7)
    fig.tight_layout()
    return fig


def plot_quality_vs_k(rows: list[dict]):
    """The k-sweep: S2T / S2M token-F1 and S2M ASR-WER against k (SRH), with the parallel-head
    ablation as separate markers, and the training time."""
    import matplotlib.pyplot as plt

    srh = sorted((r for r in rows if r["speech_head"] == "srh"), key=lambda r: int(r["k"]))
    other = [r for r in rows if r["speech_head"] != "srh"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.6))
    for key, label in (("s2t_f1", "S2T token F1"), ("s2m_f1", "S2M token F1"),
                       ("s2m_asr_wer", "S2M ASR-WER")):  # fmt: skip
        line = left.plot([int(r["k"]) for r in srh], [float(r[key]) for r in srh], "o-",
                         label=label)[0]  # fmt: skip
        for r in other:
            left.scatter(int(r["k"]), float(r[key]), marker="X", s=80, color=line.get_color())
    left.set_xlabel("k  (X: k parallel linear heads instead of the SRH)")
    left.legend(fontsize=8)
    left.set_title("quality (same recipe and steps per variant)")
    right.bar([r["variant"] for r in srh + other], [float(r["train_min"]) for r in srh + other])
    right.set_ylabel("training minutes (wall)")
    fig.tight_layout()
    return fig


def _label(ax, title: str = "", xlabel: str = "", ylabel: str = "", legend: int = 0) -> None:
    """Title, axis labels and (font size > 0) a legend, for the plots above."""
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if legend:
        ax.legend(fontsize=legend)
