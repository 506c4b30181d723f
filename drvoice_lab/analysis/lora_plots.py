"""The LoRA notebook's controls and figures: ipywidgets for the knobs of a run, a loss curve
that redraws while training logs, before/after bars and the rank sweep."""

from __future__ import annotations

from dataclasses import replace

from drvoice_lab.modeling.lora import SRH_MODES
from drvoice_lab.training.adaptation import LoraRun

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def lora_controls(run: LoraRun):
    """Widgets preset from ``run``; returns (widget to display, function giving the LoraRun
    the widgets now describe). Change them, then rerun the cells below."""
    import ipywidgets as w

    style = {"description_width": "130px"}
    rank = w.IntSlider(value=run.rank, min=1, max=64, description="rank", style=style)
    alpha = w.FloatSlider(value=run.alpha, min=1, max=128, step=1, description="alpha", style=style)
    lr = w.FloatLogSlider(value=run.lr, base=10, min=-5, max=-1, description="learning rate",
                          style=style)  # fmt: skip
    steps = w.IntSlider(value=run.steps, min=1, max=1000, description="steps", style=style)
    targets = w.SelectMultiple(options=PROJECTIONS, value=tuple(run.target_modules),
                               description="backbone LoRA on", rows=7, style=style)  # fmt: skip
    srh = w.Dropdown(options=SRH_MODES, value=run.srh, description="SRH", style=style)
    backbone = w.Checkbox(value="backbone" not in run.freeze, description="train backbone LoRA")
    grouping = w.Checkbox(value="grouping" not in run.freeze, description="train grouping W_g")
    box = w.VBox([rank, alpha, lr, steps, targets, srh, backbone, grouping])

    def current() -> LoraRun:
        frozen = [name for name, box in (("backbone", backbone), ("grouping", grouping))
                  if not box.value]  # fmt: skip
        return replace(run, rank=rank.value, alpha=alpha.value, lr=lr.value, steps=steps.value,
                       target_modules=list(targets.value), srh=srh.value,
                       freeze=frozen + [p for p in run.freeze if p == "adapter"])  # fmt: skip

    return box, current


class LiveLoss:
    """A loss curve that redraws in place as the trainer logs (pass it as ``on_log``)."""

    def __init__(self, every: int = 5, title: str = "LoRA training"):
        import matplotlib.pyplot as plt
        from IPython.display import display

        self.every, self.count = every, 0
        self.train: list[tuple[int, float]] = []
        self.eval: list[tuple[int, float]] = []
        self.fig, self.ax = plt.subplots(figsize=(6, 3))
        self.ax.set_title(title)
        self.handle = display(self.fig, display_id=True)
        plt.close(self.fig)  # shown through the handle only

    def __call__(self, record: dict) -> None:
        if "loss" in record:
            self.train.append((record["step"], record["loss"]))
        if record.get("eval_loss") is not None:
            self.eval.append((record["step"], record["eval_loss"]))
        self.count += 1
        if self.count % self.every == 0:
            self.draw()

    def draw(self) -> None:
        ax = self.ax
        ax.clear()
        for points, label, style in ((self.train, "train", "-"), (self.eval, "held-out", "o-")):
            if points:
                ax.plot(*zip(*points, strict=True), style, label=label)
        ax.set_xlabel("step")
        ax.set_ylabel("loss (text + speech)")
        ax.set_yscale("log")  # from ~15 nats at the start to below 1
        ax.legend()
        self.handle.update(self.fig)


def plot_before_after(before: dict, after: dict, target_rate: float | None = None):
    """Side-by-side bars per metric (accuracy-like on the left, rates on the right)."""
    import matplotlib.pyplot as plt
    import numpy as np

    shares = [k for k in before if "words/s" not in k]
    rates = [k for k in before if "words/s" in k]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5),
                                      gridspec_kw={"width_ratios": [len(shares), 1.5]})  # fmt: skip
    x = np.arange(len(shares))
    left.bar(x - 0.2, [before[k] for k in shares], 0.4, label="base model")
    left.bar(x + 0.2, [after[k] for k in shares], 0.4, label="with adapter")
    left.set_xticks(x, shares, rotation=30, ha="right")
    left.legend()
    right.bar([0, 1], [before[rates[0]], after[rates[0]]], color=["tab:blue", "tab:orange"])
    right.set_xticks([0, 1], ["base", "adapter"])
    right.set_title(rates[0])
    if target_rate is not None:
        right.axhline(target_rate, color="k", ls="--", lw=1, label="new voice")
        right.legend(loc="lower right")
    fig.tight_layout()
    return fig


def plot_rank_sweep(rows: list[dict]):
    """Held-out loss and typed exact match / token F1 against LoRA rank (log axis)."""
    import matplotlib.pyplot as plt

    ranks = [r["rank"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.plot(ranks, [r["eval_loss"] for r in rows], "o-", color="tab:blue")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("LoRA rank (alpha = 2 x rank)")
    ax.set_ylabel("held-out loss", color="tab:blue")
    twin = ax.twinx()
    twin.plot(ranks, [r["T2T exact match"] for r in rows], "s--", color="tab:orange",
              label="exact match")  # fmt: skip
    twin.plot(ranks, [r["T2T token F1"] for r in rows], "^:", color="tab:red", label="token F1")
    twin.set_ylabel("typed answers (T2T)")
    twin.legend(loc="lower right", fontsize=8)
    twin.set_ylim(0, 1.05)
    for r in rows:
        ax.annotate(f"{r['lora_params'] / 1e3:.0f}k", (r["rank"], r["eval_loss"]),
                    textcoords="offset points", xytext=(4, 6), fontsize=8)  # fmt: skip
    fig.tight_layout()
    return fig
