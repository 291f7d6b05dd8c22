"""Helpers shared by several test files (imported as ``helpers.<module>``: pytest puts tests/ on sys.path).

- ``fake_tensorrt``: a stand-in ``tensorrt`` module, plugin registry and CUDA wrapper (no GPU);
- ``models``: small zoo configurations and ``trained_like`` (a model as if trained);
- ``native_backend``: exported test models, images and comparison rules of the native backends;
- ``native_host``: random packed rows, op cases and comparison rules of the native op library.

Fixtures built on them live in tests/conftest.py.
"""
