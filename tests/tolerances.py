"""Every numeric tolerance the tests use, in one table (CONTRIBUTING.md#tolerances: no scattered literals).

Keys name what is compared; values are (atol, rtol). Low-precision kernels are held to the
flash-attention rule instead: error vs an fp32 reference at most ``LOWP_ERROR_FACTOR`` x plain torch's
own error in that dtype.
"""

TOL: dict[str, tuple[float, float]] = {
    # frame preparation (uint8 in, float out after normalisation): C++/CUDA vs the torch reference
    "prepare_frames_c": (2e-4, 1e-4),
    "prepare_frames_cuda": (1e-3, 1e-4),
    # NV12 -> RGB conversion rounding vs the reference (values after normalisation)
    "prepare_frames_nv12": (2e-3, 1e-4),
    # the frame-prep reference vs the antialiased filter written out by hand (8-bit levels, float64 vs fp32)
    "prepare_frames_ref_levels": (1e-3, 0.0),
    # NV12 -> RGB of the standards' published codes of primaries (rounded to whole levels) vs 0/255
    "nv12_primaries_levels": (2.5, 0.0),
    # frame prep written as fp16/bf16 vs fp32 (normalised values up to ~2.6; bf16 has 8 mantissa bits)
    "prepare_frames_lowp": (3e-2, 1e-2),
    # decoded frames: NVDEC vs the CPU decoder (uint8 levels)
    "nvdec_vs_cpu_u8": (3.0, 0.0),
    # NVDEC's NV12 surface vs FFmpeg's decode: H.264 decoding is bit-exact by specification
    "nvdec_vs_cpu_nv12": (0.0, 0.0),
    # torchcodec (system FFmpeg) vs PyAV (bundled FFmpeg) RGB: same decoder, swscale versions may round differently
    "torchcodec_vs_pyav_u8": (1.0, 0.0),
    # frame prep of a decoded frame given as NV12 vs as FFmpeg's RGB (std 0.5): 3 uint8 levels of chroma
    # upsampling and rounding difference between swscale and the op
    "decoded_nv12_vs_rgb_prep": (3 / 255 / 0.5, 0.0),
    # the web demo's keyframe thumbnail (decoded by the library's reader, PNG-encoded) vs the same frame
    # decoded with PyAV directly: same FFmpeg decoder and RGB conversion, lossless PNG (uint8 levels)
    "app_thumbnail_vs_pyav_u8": (0.0, 0.0),
    # metrics vs hand-computed values
    "metrics": (1e-6, 0.0),
    # KV-reuse logits vs a full re-encode (fp32 tiny models)
    "kv_reuse_logits": (1e-4, 1e-4),
    # Triton kernels vs their references (fp32)
    "triton_fp32": (1e-5, 1e-4),
    "triton_fp32_grad": (1e-4, 1e-3),
    # torch-chunked LM-head loss vs the full-logits reference (fp32; only summation order differs)
    "chunked_fp32": (1e-5, 1e-4),
    "chunked_fp32_grad": (1e-5, 1e-4),
    # the GRPO update's padded batched forward (vision tower once per distinct image) vs one unpadded forward per
    # rollout dialogue (fp32; only the matmul blocking of batched vs single rows differs): log-probs and loss,
    # then gradients (summed over the rollouts that share an image)
    "batched_update_fp32": (1e-5, 1e-4),
    "batched_update_fp32_grad": (1e-5, 1e-3),
    # GRPO / calibration math vs values worked out by hand (fp32)
    "loss_math": (1e-6, 1e-5),
    # reward values vs the hand-worked tables (fp32 tensors of Python-float arithmetic)
    "reward_tables": (1e-6, 0.0),
    # advantages vs a hand-worked group (fp32)
    "advantages": (1e-6, 1e-6),
    # low-precision rule: an absolute floor added to LOWP_ERROR_FACTOR x torch's error, for
    # elements where torch in bf16 happens to be exact (the kernel's fp32 accumulation may differ by one ulp)
    "lowp_floor": (1e-6, 0.0),
    # SAM2 segmenter (fp32): batched vs per-item decode, hand-recomputed decoder outputs
    "segmenter_fp32": (1e-4, 1e-4),
    # SAM2 memory features, which sam2 stores in bf16: recomputed vs stored (one bf16 rounding step apart)
    "segmenter_bf16_memory": (2e-2, 1e-2),
    # SAM2 segmenter: CUDA vs CPU logits (TF32/cuDNN kernels differ), and the share of mask pixels
    # (atol only) allowed to flip between the two after propagation
    "segmenter_gpu_vs_cpu": (2e-2, 1e-2),
    "segmenter_gpu_mask_disagreement": (2e-2, 0.0),
    # torch.compile'd decode step / SAM2 decoder vs eager PyTorch (fp32; fused kernels sum in another order)
    "compile_fp32": (1e-4, 1e-4),
    # ONNX Runtime vs PyTorch (fp32 graphs)
    "onnx_fp32": (1e-4, 1e-3),
    # a TensorRT fp32 engine vs ONNX Runtime (TF32 tactics may be chosen for convolutions and matmuls)
    "tensorrt_fp32": (1e-3, 1e-3),
    # SFT images (Qwen-normalised, std 0.5) from the frame prep vs the Qwen processor given PIL-resized
    # frames: mean |difference| (atol only) from the two resize filters; a swapped image pair is ~0.5
    "sft_image_order_mean_abs": (5e-2, 0.0),
    # logits of a LoRA-adapted model vs the same model with the adapters merged into the weights (fp32)
    "lora_merge": (1e-5, 1e-4),
    # 2 gloo processes vs 1 process accumulating the same 2 examples: loss, gradient norm and weights after one
    # AdamW step (fp32; only the summation order of the gradients differs)
    "gloo_vs_single_process": (1e-5, 1e-4),
    # 2 FSDP2 gloo ranks vs 1 plain process on the same 2 examples: loss, gradient norm and every gathered
    # gradient (fp32; the reduce-scatter and the all_reduce change only the summation order)
    "fsdp2_vs_single_process": (1e-6, 1e-5),
    # 2 NCCL ranks, bf16: FSDP2 (bf16 all-gathered weights) vs replicate (fp32 weights under autocast), loss
    # after one step (bf16 has 8 mantissa bits; the loss is ~14)
    "fsdp2_bf16_vs_replicate_gpu": (5e-2, 1e-2),
    # bench/latency.py report: ratios and means recomputed from the raw runs (float rounding only), and
    # per-stage seconds summing to the per-video latency (rounded to 1 us in the timings it reads)
    "bench_report_recomputed": (0.0, 1e-9),
    "bench_stage_sum_s": (1e-5, 0.0),
}

# Binarised masks of two backends running the same model (onnxruntime or torch.compile vs torch, whole propagation)
MIN_BACKEND_MASK_IOU = 0.99

LOWP_ERROR_FACTOR = 2.0


def tol(name: str) -> dict[str, float]:
    """``torch.testing.assert_close`` keyword arguments for the named comparison."""
    atol, rtol = TOL[name]
    return {"atol": atol, "rtol": rtol}
