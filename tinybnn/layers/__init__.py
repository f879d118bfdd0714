"""The layers, one per file, each with its forward moment equations and backward pass.

Reading order: ``base`` (the contract), ``linear``, ``relu``, ``softmax`` (enough for an MLP),
then ``conv2d``, ``maxpool``, ``flatten`` (the paper's CNN); ``relu_exact`` is the exact-moment
alternative to ``relu``.
"""

from .base import Layer
from .conv2d import Conv2d
from .flatten import Flatten
from .linear import Linear
from .maxpool import MaxPool2d
from .relu import ReLU
from .relu_exact import ReLUExact
from .softmax import Softmax

__all__ = ["Layer", "Linear", "Conv2d", "ReLU", "ReLUExact", "MaxPool2d", "Flatten", "Softmax"]
