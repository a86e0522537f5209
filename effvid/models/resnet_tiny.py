"""A narrow ResNet for CPU-sized experiments (the quick start, tests, small devices).

It has the same attribute layout as torchvision's ResNet (``conv1``, ``bn1``, ``layer1``..
``layer4`` of torchvision ``BasicBlock``s, ``fc``), so the TSM insertion rule, weight loading
and everything else treat it exactly like ResNet-18.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock


class ResNetTiny(nn.Module):
    def __init__(self, widths: tuple[int, ...] = (16, 32, 64, 128), blocks: tuple[int, ...] = (1, 1, 1, 1),
                 num_classes: int = 1000):
        super().__init__()
        if len(widths) != 4 or len(blocks) != 4:
            raise ValueError("ResNetTiny needs four widths and four block counts")
        self.conv1 = nn.Conv2d(3, widths[0], kernel_size=3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.Identity()  # small inputs (64x64): keep resolution
        in_planes = widths[0]
        layers = []
        for i, (width, n) in enumerate(zip(widths, blocks)):
            stride = 1 if i == 0 else 2
            seq = []
            for j in range(n):
                s = stride if j == 0 else 1
                down = None
                if s != 1 or in_planes != width:
                    down = nn.Sequential(nn.Conv2d(in_planes, width, 1, stride=s, bias=False),
                                         nn.BatchNorm2d(width))
                seq.append(BasicBlock(in_planes, width, s, down))
                in_planes = width
            layers.append(nn.Sequential(*seq))
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_planes, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))
