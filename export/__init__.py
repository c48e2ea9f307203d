"""Export to ONNX and TensorRT (run from the checkout): ``python -m export.trt CKPT --out DIR``.

``shapes`` (the I/O contract of every graph), ``sam2_graphs`` and ``policy_graphs`` (the exportable
wrappers), ``onnx`` (export and ONNX Runtime verification), ``cases`` (realistic verification inputs),
``tensorrt_build`` (engines) and ``trt`` (the command). The library runs the results through
``videoseg_o3.runtime``; it never imports this package.
"""
