"""specdeploy: SpecNet (spectral-domain CNNs) from PyTorch to TensorRT, with measured memory savings.

Submodules that run on a Jetson (``packed``, ``reference``, ``runtime``, ``trt``) never import torch.
"""

__version__ = "0.1.0"
