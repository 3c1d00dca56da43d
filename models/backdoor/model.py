"""Networks trained on distilled data: the ConvNet used for distillation and two evaluation networks.

ConvNet (Zhao et al., ICLR 2021, "Dataset Condensation with Gradient Matching", without the norm layer):
``[conv3×3(w) → ReLU → avgpool2] × 2 → flatten → fc(hidden) → ReLU → fc(classes)``. The ``fc(hidden)``
output is the *penultimate layer* whose neurons DOORPING selects.
"""
import torch
from torch import nn


class ConvNet(nn.Module):
    def __init__(self, channels: int = 1, classes: int = 10, size: int = 16, width: int = 32, hidden: int = 128):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten())
        self.fc1 = nn.Linear(width * (size // 4) ** 2, hidden)
        self.head = nn.Linear(hidden, classes)

    def penultimate(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.fc1(self.features(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.penultimate(x))


class MLP(nn.Module):
    def __init__(self, channels: int = 1, classes: int = 10, size: int = 16, hidden: int = 128):
        super().__init__()
        self.features = nn.Sequential(nn.Flatten(), nn.Linear(channels * size * size, 256), nn.ReLU())
        self.fc1 = nn.Linear(256, hidden)
        self.head = nn.Linear(hidden, classes)

    def penultimate(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.fc1(self.features(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.penultimate(x))


NETS = {
    "convnet": lambda **kw: ConvNet(**kw),
    "convnet_wide": lambda **kw: ConvNet(width=64, hidden=256, **kw),
    "mlp": lambda **kw: MLP(**kw),
}


def make(name: str, **kw) -> nn.Module:
    return NETS[name](**kw)
