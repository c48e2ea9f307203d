"""Triton kernels for training (run from the checkout; not part of the installed wheel).

Importing this package registers each kernel with :mod:`videoseg_o3.ops` so the library's
dispatcher can choose it (``VIDEOSEG_KERNEL_IMPL=triton``).
"""
