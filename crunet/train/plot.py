"""A PNG of loss and accuracy per epoch from metrics.csv (matplotlib imported only here, only when called)."""

from __future__ import annotations

from pathlib import Path


def plot_curves(rows: list[dict], path: str | Path) -> Path | None:
    """Two panels: losses and top-1 accuracies; returns None when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    epochs = [int(r["epoch"]) for r in rows]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for key in [k for k in rows[0] if k.startswith(("train_loss", "val_loss", "loss_"))]:
        ax_loss.plot(epochs, [float(r[key]) for r in rows], marker="o", label=key)
    for key in [k for k in rows[0] if "top1" in k]:
        ax_acc.plot(epochs, [float(r[key]) for r in rows], marker="o", label=key)
    for ax, title in ((ax_loss, "loss"), (ax_acc, "top-1 accuracy (%)")):
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
