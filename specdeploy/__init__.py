"""specdeploy: SpecNet (spectral-domain CNNs) from PyTorch to TensorRT, with measured memory savings.

What runs on a Jetson never imports torch: ``packed``, ``ops``, ``reference``, ``liveness``,
``metadata``, ``recipes``, ``data``, ``runtime`` (every backend module), ``native`` (all but
``native.cuda``, whose buffers are torch CUDA tensors), ``memory``, ``bench``, ``sweep`` and ``trt``.
tests/test_torch_boundary.py imports each of them with torch blocked. The torch side: ``nn``, ``zoo``,
``train``, ``loader``, ``checkpoint``, ``export``, ``native.cuda``.
"""

__version__ = "0.1.0"
