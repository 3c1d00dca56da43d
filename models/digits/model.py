import torch
from torch import nn


class DigitsCNN(nn.Module):
    r"""A three-block CNN for scikit-learn's 8×8 handwritten digits.

    conv(1→16)–ReLU, conv(16→32)–ReLU–maxpool, conv(32→64)–ReLU–maxpool, then
    Linear(256, 64)–ReLU–Linear(64, 10). Returns class probabilities and the arg-max label,
    so the served model answers both questions a client asks without post-processing.

    Shapes:
        - **input:** image :math:`(N, 1, 8, 8)`, intensities scaled to [0, 1]
        - **output:** probabilities :math:`(N, 10)`, label :math:`(N, 1)` int64
    """

    def __init__(self, width: int = 16, hidden: int = 64, num_classes: int = 10):
        super().__init__()
        self.width, self.hidden, self.num_classes = width, hidden, num_classes
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(2 * width, 4 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(4 * width * 4, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))

    def logits(self, image: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(image))

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        probabilities = self.logits(image).softmax(dim=-1)
        return probabilities, probabilities.argmax(dim=-1, keepdim=True)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(width={self.width}, hidden={self.hidden}, num_classes={self.num_classes})"
