"""Train DigitsCNN: `python -m models.digits.train [--epochs 40] [--seed 0]`.

The epoch is chosen on the validation split; the test split is scored once, at that epoch. Writes the
weights (safetensors) and a metrics JSON that the model card quotes.
"""
import argparse
import json
import time
from pathlib import Path

import torch
from tqdm import tqdm
from safetensors.torch import save_file
from torch import nn

from .data import load_splits
from .model import DigitsCNN

WEIGHTS_DIR = Path(__file__).parent / "weights"


def weights_path(seed: int) -> Path:
    return WEIGHTS_DIR / f"digits_cnn_seed{seed}.safetensors"


def accuracy(model: nn.Module, x, y) -> float:
    model.eval()
    with torch.no_grad():
        return (model.logits(torch.from_numpy(x)).argmax(1).numpy() == y).mean().item()


def train(epochs: int = 40, seed: int = 0, batch_size: int = 64, lr: float = 3e-3, out: Path | None = None) -> dict:
    out = out or weights_path(seed)
    torch.manual_seed(seed)
    splits = load_splits()
    x_train, y_train = (torch.from_numpy(a) for a in splits["train"])
    model = DigitsCNN()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-4)
    best = {"val_accuracy": -1.0}
    started = time.perf_counter()
    for epoch in tqdm(range(epochs), desc="digits epochs", disable=None):
        model.train()
        order = torch.randperm(len(x_train))
        for i in range(0, len(order), batch_size):
            idx = order[i : i + batch_size]
            loss = nn.functional.cross_entropy(model.logits(x_train[idx]), y_train[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        val = accuracy(model, *splits["val"])
        print(f"epoch {epoch + 1:3d}/{epochs}  loss {loss.item():.4f}  val acc {val:.4f}", flush=True)
        if val > best["val_accuracy"]:
            best = {"epoch": epoch + 1, "val_accuracy": val, "state": {k: v.clone() for k, v in model.state_dict().items()}}
    model.load_state_dict(best.pop("state"))
    metrics = {
        **best,
        "test_accuracy": accuracy(model, *splits["test"]),
        "train_accuracy": accuracy(model, *splits["train"]),
        "epochs": epochs, "seed": seed, "batch_size": batch_size, "lr": lr,
        "split_sizes": {k: len(v[1]) for k, v in splits.items()},
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_seconds": round(time.perf_counter() - started, 1),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(model.state_dict(), str(out))
    out.with_suffix(".json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="default: weights/digits_cnn_seed<seed>.safetensors")
    args = parser.parse_args()
    metrics = train(args.epochs, args.seed, out=args.out)
    print(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    main()
