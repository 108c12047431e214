"""L3: predict switches the model back to training mode, so dropout stays on at inference."""

from planted_common import MLP
from planted_common import setup as base
from torch import nn


class DropoutMLP(MLP):
    def __init__(self):
        super().__init__()
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        return self.fc2(self.drop(self.act(self.fc1(x))))


def predict(model, batch):
    model.train()  # the bug
    return model(batch[0])


def setup(config):
    return base(model=DropoutMLP(), predict_fn=predict)
