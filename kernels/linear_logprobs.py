"""Target-token log-probabilities through the LM head, without the (N, V) logits.

``lp[n] = log_softmax(hidden[n] @ weight.T / temperature)[target_ids[n]]`` and, for free, the
entropy of that softmax. This is the vocabulary-sized part of the policy loss (V = 151,936 for
Qwen3-VL): everything after it works on (N,) vectors. Three tiers, one signature:

- :func:`linear_logprobs_ref`: plain torch, the full logits (the obvious version; tests compare to it).
- :func:`linear_logprobs_chunked`: torch, ``chunk_size`` tokens at a time; logits of one chunk
  exist at once and are recomputed in the backward (a baseline and a fallback without Triton).
- :func:`linear_logprobs_triton`: Triton. The forward walks vocabulary tiles with an online
  log-sum-exp (the matmul is done tile by tile in registers, fp32 accumulation) and keeps only the
  log-sum-exp per token. Two backwards, both recomputing the logits tile by tile:

  * chunked (default, ``backward_chunk_size`` tokens at a time): Triton writes the chunk's
    ``dlogits`` in the input dtype, cuBLAS computes ``dlogits @ weight`` and ``dlogits.T @ hidden``.
    Memory: one (chunk, V) tensor. FLOPs: 8 N H V in all, against the 6 N H V floor.
  * fully fused (``backward_chunk_size=None``): ``dlogits`` lives only in registers and both
    products are added into fp32 buffers with atomics. Nothing of size tokens x V is ever
    allocated, but every gradient element receives N/BLOCK_N (weight) or V/BLOCK_V (hidden) atomic
    adds, which on a GPU is far more memory traffic than the chunked variant.

Gradients: hidden and weight get ``grad_lp[n] * (onehot(target) - softmax) / temperature``
pushed through the LM head; the entropy output is a metric and carries no gradient.
"""

from __future__ import annotations

import torch

from kernels._triton_support import INTERPRET, TRITON_IMPORT_ERROR

if TRITON_IMPORT_ERROR is None:
    import triton
    import triton.language as tl


def _check_inputs(hidden: torch.Tensor, weight: torch.Tensor, target_ids: torch.Tensor, temperature: float) -> None:
    if hidden.dim() != 2 or weight.dim() != 2:
        raise ValueError(f"Invalid shapes: hidden {tuple(hidden.shape)} must be (N, H) and weight {tuple(weight.shape)} must be (V, H).")
    if hidden.shape[1] != weight.shape[1]:
        raise ValueError(f"Invalid shapes: hidden (N, H={hidden.shape[1]}) and weight (V, H={weight.shape[1]}) disagree on H.")
    if target_ids.shape != (hidden.shape[0],):
        raise ValueError(f"Invalid target_ids shape {tuple(target_ids.shape)}. Expected (N,) = ({hidden.shape[0]},).")
    if target_ids.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"Invalid target_ids dtype ({target_ids.dtype}). Supported values are torch.int64, torch.int32.")
    if hidden.dtype != weight.dtype:
        raise ValueError(f"Invalid dtypes: hidden is {hidden.dtype} but weight is {weight.dtype}; they must match.")
    if not temperature > 0:
        raise ValueError(f"Invalid temperature ({temperature}). It must be > 0.")


def linear_logprobs_ref(
    hidden: torch.Tensor, weight: torch.Tensor, target_ids: torch.Tensor, temperature: float = 1.0, *, with_entropy: bool = True
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Plain-torch reference: materialises the full logits.

    Args:
        hidden: (N, H) float, last hidden states of the tokens that *predict* ``target_ids``.
        weight: (V, H) float, LM head, same dtype as ``hidden``.
        target_ids: (N,) int64 in [0, V).
        temperature: > 0; logits are divided by it (as at sampling time).
        with_entropy: also return the entropy (here it costs another N x V tensor; the other tiers get
            it for free and simply drop it when False).
    Returns:
        lp: (N,) fp32 log-probability of each target (differentiable).
        entropy: (N,) fp32 entropy of each token's distribution in nats (detached: a metric), or None.
    """
    _check_inputs(hidden, weight, target_ids, temperature)
    # The matmul runs in the input dtype, exactly like an eager LM head; log_softmax in fp32 (or
    # fp64 for fp64 inputs, which the tests use as the exact answer).
    logits = (hidden @ weight.T).to(torch.promote_types(hidden.dtype, torch.float32)) / temperature
    logp = torch.log_softmax(logits, dim=-1)
    lp = logp.gather(1, target_ids.long()[:, None])[:, 0]
    if not with_entropy:
        return lp, None
    with torch.no_grad():
        entropy = -(logp.exp() * logp).sum(-1)
    return lp, entropy


class LinearLogProbsChunkedFunction(torch.autograd.Function):
    """Torch, chunk by chunk; saves only the per-token log-sum-exp and recomputes logits in backward."""

    @staticmethod
    def forward(ctx, hidden, weight, target_ids, temperature, chunk_size):  # type: ignore[override]
        n = hidden.shape[0]
        lp = torch.empty(n, dtype=torch.float32, device=hidden.device)
        entropy = torch.empty_like(lp)
        lse = torch.empty_like(lp)
        targets = target_ids.long()
        for start in range(0, n, chunk_size):
            sl = slice(start, min(start + chunk_size, n))
            logits = (hidden[sl] @ weight.T).float() / temperature
            chunk_lse = torch.logsumexp(logits, dim=-1)
            probs = torch.exp(logits - chunk_lse[:, None])
            lse[sl] = chunk_lse
            lp[sl] = logits.gather(1, targets[sl, None])[:, 0] - chunk_lse
            entropy[sl] = chunk_lse - (probs * logits).sum(-1)
            del logits, probs
        ctx.save_for_backward(hidden, weight, targets, lse)
        ctx.temperature = temperature
        ctx.chunk_size = chunk_size
        ctx.mark_non_differentiable(entropy)
        return lp, entropy

    @staticmethod
    def backward(ctx, grad_lp, grad_entropy):  # type: ignore[override]
        hidden, weight, targets, lse = ctx.saved_tensors
        need_hidden, need_weight = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        n = hidden.shape[0]
        grad_hidden = torch.empty_like(hidden) if need_hidden else None
        # fp32 accumulation across chunks, cast once at the end. fp32 inputs accumulate in place (addmm_);
        # 16-bit inputs need a (V, H) 16-bit product per chunk because addmm_ cannot mix dtypes.
        grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_weight else None
        if grad_lp is None:
            grad_lp = torch.zeros(n, dtype=torch.float32, device=hidden.device)
        for start in range(0, n, ctx.chunk_size):
            sl = slice(start, min(start + ctx.chunk_size, n))
            logits = (hidden[sl] @ weight.T).float() / ctx.temperature
            dlogits = torch.exp(logits - lse[sl, None]).neg_()
            del logits
            dlogits.scatter_add_(1, targets[sl, None], torch.ones_like(lse[sl, None]))
            dlogits.mul_((grad_lp[sl] / ctx.temperature)[:, None])
            dlogits = dlogits.to(hidden.dtype)
            if need_hidden:
                grad_hidden[sl] = dlogits @ weight
            if need_weight:
                if hidden.dtype == torch.float32:
                    grad_weight.addmm_(dlogits.T, hidden[sl])
                else:
                    grad_weight.add_(dlogits.T @ hidden[sl])
            del dlogits
        return grad_hidden, (grad_weight.to(weight.dtype) if need_weight else None), None, None, None


def linear_logprobs_chunked(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    target_ids: torch.Tensor,
    temperature: float = 1.0,
    *,
    with_entropy: bool = True,
    chunk_size: int = 1024,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Same as :func:`linear_logprobs_ref`, ``chunk_size`` tokens at a time (peak ~3 x chunk_size x V x 4 bytes)."""
    _check_inputs(hidden, weight, target_ids, temperature)
    if chunk_size < 1:
        raise ValueError(f"Invalid chunk_size ({chunk_size}). It must be >= 1.")
    lp, entropy = LinearLogProbsChunkedFunction.apply(hidden, weight, target_ids, float(temperature), int(chunk_size))
    return lp, (entropy if with_entropy else None)


# ----------------------------------------------------------------------------------------------
# Triton
# ----------------------------------------------------------------------------------------------

if TRITON_IMPORT_ERROR is None:

    @triton.jit
    def _logits_tile(
        hidden_ptr, weight_ptr, offs_n, offs_v, n_mask, v_mask, H, stride_hn, stride_wv, temperature,
        BLOCK_N: tl.constexpr, BLOCK_V: tl.constexpr, BLOCK_H: tl.constexpr, DOT_FP32: tl.constexpr,
        PRECISION: tl.constexpr,
    ):
        """``(hidden[offs_n] @ weight[offs_v].T) / temperature`` as a (BLOCK_N, BLOCK_V) fp32 tile; the
        forward and both backwards recompute logits with it, so all three see the same numbers."""
        acc = tl.zeros((BLOCK_N, BLOCK_V), tl.float32)
        for h0 in range(0, H, BLOCK_H):
            offs_h = h0 + tl.arange(0, BLOCK_H)
            h_mask = offs_h < H
            a = tl.load(hidden_ptr + offs_n[:, None] * stride_hn + offs_h[None, :], mask=n_mask[:, None] & h_mask[None, :], other=0.0)
            b = tl.load(weight_ptr + offs_v[:, None] * stride_wv + offs_h[None, :], mask=v_mask[:, None] & h_mask[None, :], other=0.0)
            if DOT_FP32:
                # The interpreter's low-precision dot is wrong (Triton 3.8); bf16 x bf16 products are
                # exact in fp32, so upcasting gives what the GPU's bf16 MMA with fp32 accumulation gives.
                a = a.to(tl.float32)
                b = b.to(tl.float32)
            acc = tl.dot(a, tl.trans(b), acc, input_precision=PRECISION)
        return acc / temperature

    @triton.jit
    def _linear_lse_forward_kernel(
        hidden_ptr, weight_ptr, target_ptr, partial_ptr,
        N, V, H, stride_hn, stride_wv, temperature, tiles_per_split,
        BLOCK_N: tl.constexpr, BLOCK_V: tl.constexpr, BLOCK_H: tl.constexpr, DOT_FP32: tl.constexpr,
        PRECISION: tl.constexpr,
    ):
        """One program: BLOCK_N tokens x one split of the vocabulary (``tiles_per_split`` tiles).

        Writes, per token, the split's running max ``m``, ``s = sum exp(z - m)``,
        ``t = sum exp(z - m) * z`` (for the entropy) and the target's logit if it lies in the split.
        """
        pid_n = tl.program_id(0)
        pid_s = tl.program_id(1)
        num_splits = tl.num_programs(1)
        # int64 offsets: row x stride products pass 2^31 at real sizes (e.g. 16k tokens x 151,936 dlogits).
        offs_n = (pid_n * BLOCK_N + tl.arange(0, BLOCK_N)).to(tl.int64)
        n_mask = offs_n < N
        target = tl.load(target_ptr + offs_n, mask=n_mask, other=-1)
        m = tl.full((BLOCK_N,), float("-inf"), tl.float32)
        s = tl.zeros((BLOCK_N,), tl.float32)
        t = tl.zeros((BLOCK_N,), tl.float32)
        z_target = tl.zeros((BLOCK_N,), tl.float32)
        for tile in range(0, tiles_per_split):
            offs_v = ((pid_s * tiles_per_split + tile) * BLOCK_V + tl.arange(0, BLOCK_V)).to(tl.int64)
            v_mask = offs_v < V
            z = _logits_tile(
                hidden_ptr, weight_ptr, offs_n, offs_v, n_mask, v_mask, H, stride_hn, stride_wv, temperature,
                BLOCK_N, BLOCK_V, BLOCK_H, DOT_FP32, PRECISION,
            )
            z_finite = tl.where(v_mask[None, :], z, 0.0)
            z = tl.where(v_mask[None, :], z, float("-inf"))
            m_new = tl.maximum(m, tl.max(z, axis=1))
            # A split can start past V (last split); keep exp() finite while nothing has been seen.
            m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
            alpha = tl.exp(m - m_safe)
            p = tl.exp(z - m_safe[:, None])
            s = s * alpha + tl.sum(p, axis=1)
            t = t * alpha + tl.sum(p * z_finite, axis=1)
            z_target += tl.sum(tl.where(offs_v[None, :] == target[:, None], z_finite, 0.0), axis=1)
            m = m_new
        base = partial_ptr + pid_s * N + offs_n
        stride_k = num_splits * N
        tl.store(base, m, mask=n_mask)
        tl.store(base + stride_k, s, mask=n_mask)
        tl.store(base + 2 * stride_k, t, mask=n_mask)
        tl.store(base + 3 * stride_k, z_target, mask=n_mask)

    @triton.jit
    def _dlogits_tile(
        hidden_ptr, weight_ptr, target, lse, grad_lp, offs_n, offs_v, n_mask, v_mask, H, stride_hn, stride_wv, temperature,
        BLOCK_N: tl.constexpr, BLOCK_V: tl.constexpr, BLOCK_H: tl.constexpr, DOT_FP32: tl.constexpr, PRECISION: tl.constexpr,
    ):
        """d lp / d logits for one (tokens x vocab) tile, times grad_lp: logits recomputed, fp32."""
        z = _logits_tile(
            hidden_ptr, weight_ptr, offs_n, offs_v, n_mask, v_mask, H, stride_hn, stride_wv, temperature,
            BLOCK_N, BLOCK_V, BLOCK_H, DOT_FP32, PRECISION,
        )
        p = tl.exp(z - lse[:, None])
        onehot = tl.where(offs_v[None, :] == target[:, None], 1.0, 0.0)
        dlogits = (onehot - p) * (grad_lp / temperature)[:, None]
        return tl.where(v_mask[None, :] & n_mask[:, None], dlogits, 0.0)

    @triton.jit
    def _linear_logprobs_backward_kernel(
        hidden_ptr, weight_ptr, target_ptr, lse_ptr, grad_lp_ptr, grad_hidden_ptr, grad_weight_ptr,
        N, V, H, stride_hn, stride_wv, temperature,
        BLOCK_N: tl.constexpr, BLOCK_V: tl.constexpr, BLOCK_H: tl.constexpr, DOT_FP32: tl.constexpr, PRECISION: tl.constexpr,
        NEED_HIDDEN: tl.constexpr, NEED_WEIGHT: tl.constexpr,
    ):
        """Fully fused backward: one (BLOCK_N x BLOCK_V) dlogits tile, recomputed, then both products with atomics."""
        pid_n = tl.program_id(0)
        pid_v = tl.program_id(1)
        # int64 offsets: row x stride products pass 2^31 at real sizes (e.g. 16k tokens x 151,936 dlogits).
        offs_n = (pid_n * BLOCK_N + tl.arange(0, BLOCK_N)).to(tl.int64)
        offs_v = (pid_v * BLOCK_V + tl.arange(0, BLOCK_V)).to(tl.int64)
        n_mask = offs_n < N
        v_mask = offs_v < V
        grad_lp = tl.load(grad_lp_ptr + offs_n, mask=n_mask, other=0.0)
        # Tokens outside the loss (prompt, observations, padding) have zero gradient: skip their tiles.
        if tl.max(tl.abs(grad_lp), axis=0) > 0:
            target = tl.load(target_ptr + offs_n, mask=n_mask, other=-1)
            lse = tl.load(lse_ptr + offs_n, mask=n_mask, other=0.0)
            dlogits = _dlogits_tile(
                hidden_ptr, weight_ptr, target, lse, grad_lp, offs_n, offs_v, n_mask, v_mask, H, stride_hn, stride_wv,
                temperature, BLOCK_N, BLOCK_V, BLOCK_H, DOT_FP32, PRECISION,
            )
            # Round dlogits to the input dtype, as an eager bf16 backward would, then feed the MMA.
            d_lo = dlogits.to(hidden_ptr.dtype.element_ty)
            if DOT_FP32:
                d_lo = d_lo.to(tl.float32)
            for h0 in range(0, H, BLOCK_H):
                offs_h = h0 + tl.arange(0, BLOCK_H)
                h_mask = offs_h < H
                if NEED_HIDDEN:
                    b = tl.load(weight_ptr + offs_v[:, None] * stride_wv + offs_h[None, :], mask=v_mask[:, None] & h_mask[None, :], other=0.0)
                    if DOT_FP32:
                        b = b.to(tl.float32)
                    gh = tl.dot(d_lo, b, input_precision=PRECISION)
                    tl.atomic_add(grad_hidden_ptr + offs_n[:, None] * H + offs_h[None, :], gh, mask=n_mask[:, None] & h_mask[None, :])
                if NEED_WEIGHT:
                    a = tl.load(hidden_ptr + offs_n[:, None] * stride_hn + offs_h[None, :], mask=n_mask[:, None] & h_mask[None, :], other=0.0)
                    if DOT_FP32:
                        a = a.to(tl.float32)
                    gw = tl.dot(tl.trans(d_lo), a, input_precision=PRECISION)
                    tl.atomic_add(grad_weight_ptr + offs_v[:, None] * H + offs_h[None, :], gw, mask=v_mask[:, None] & h_mask[None, :])

    @triton.jit
    def _linear_dlogits_kernel(
        hidden_ptr, weight_ptr, target_ptr, lse_ptr, grad_lp_ptr, dlogits_ptr,
        N, V, H, stride_hn, stride_wv, temperature,
        BLOCK_N: tl.constexpr, BLOCK_V: tl.constexpr, BLOCK_H: tl.constexpr, DOT_FP32: tl.constexpr, PRECISION: tl.constexpr,
    ):
        """Chunked backward, step 1: write one tile of dlogits (input dtype) for cuBLAS to multiply."""
        pid_n = tl.program_id(0)
        pid_v = tl.program_id(1)
        # int64 offsets: row x stride products pass 2^31 at real sizes (e.g. 16k tokens x 151,936 dlogits).
        offs_n = (pid_n * BLOCK_N + tl.arange(0, BLOCK_N)).to(tl.int64)
        offs_v = (pid_v * BLOCK_V + tl.arange(0, BLOCK_V)).to(tl.int64)
        n_mask = offs_n < N
        v_mask = offs_v < V
        out = dlogits_ptr + offs_n[:, None] * V + offs_v[None, :]
        out_mask = n_mask[:, None] & v_mask[None, :]
        grad_lp = tl.load(grad_lp_ptr + offs_n, mask=n_mask, other=0.0)
        if tl.max(tl.abs(grad_lp), axis=0) > 0:
            target = tl.load(target_ptr + offs_n, mask=n_mask, other=-1)
            lse = tl.load(lse_ptr + offs_n, mask=n_mask, other=0.0)
            dlogits = _dlogits_tile(
                hidden_ptr, weight_ptr, target, lse, grad_lp, offs_n, offs_v, n_mask, v_mask, H, stride_hn, stride_wv,
                temperature, BLOCK_N, BLOCK_V, BLOCK_H, DOT_FP32, PRECISION,
            )
            tl.store(out, dlogits.to(dlogits_ptr.dtype.element_ty), mask=out_mask)
        else:
            tl.store(out, tl.zeros((BLOCK_N, BLOCK_V), tl.float32).to(dlogits_ptr.dtype.element_ty), mask=out_mask)


#: Tokens per backward chunk of the Triton path: (2048, 151,936) bf16 dlogits are 0.6 GB, and 2048 rows
#: keep cuBLAS at full speed. ``None`` selects the fully fused (atomic) backward.
DEFAULT_BACKWARD_CHUNK_SIZE: int | None = 2048


def _block_sizes(n: int) -> tuple[int, int, int, int]:
    """(BLOCK_N, BLOCK_V, BLOCK_H, num_warps). Fixed choices: no autotuning (the interpreter cannot, and
    one good H100 configuration is enough for a loss whose cost is three large matmuls)."""
    if INTERPRET:
        return 16, 32, 32, 1
    block_n = 16 if n <= 16 else (32 if n <= 32 else 64)
    return block_n, 128, 64, 8


def _dot_precision(dtype: torch.dtype) -> str:
    """fp32 inputs get exact fp32 products ("ieee"), as torch's fp32 matmul does by default; TF32 would
    cost ~1e-3 relative error. For 16-bit inputs the choice is moot."""
    return "ieee" if dtype == torch.float32 else "tf32"


class LinearLogProbsTritonFunction(torch.autograd.Function):
    """Autograd wrapper of the two Triton kernels."""

    @staticmethod
    def forward(ctx, hidden, weight, target_ids, temperature, backward_chunk_size):  # type: ignore[override]
        hidden = hidden.contiguous()
        weight = weight.contiguous()
        targets = target_ids.to(torch.int64).contiguous()
        n, h = hidden.shape
        v = weight.shape[0]
        block_n, block_v, block_h, num_warps = _block_sizes(n)
        n_blocks = triton.cdiv(n, block_n)
        v_tiles = triton.cdiv(v, block_v)
        # Split the vocabulary across programs when there are too few token blocks to fill the GPU.
        num_splits = 1 if INTERPRET else max(1, min(v_tiles, triton.cdiv(264, n_blocks)))
        tiles_per_split = triton.cdiv(v_tiles, num_splits)
        num_splits = triton.cdiv(v_tiles, tiles_per_split)
        partial = torch.empty((4, num_splits, n), dtype=torch.float32, device=hidden.device)
        if n > 0:
            extra = {} if INTERPRET else {"num_warps": num_warps}
            _linear_lse_forward_kernel[(n_blocks, num_splits)](
                hidden, weight, targets, partial, n, v, h, hidden.stride(0), weight.stride(0), float(temperature),
                tiles_per_split, BLOCK_N=block_n, BLOCK_V=block_v, BLOCK_H=block_h, DOT_FP32=INTERPRET, PRECISION=_dot_precision(hidden.dtype), **extra,
            )
        m, s, t, z_target = partial
        m_all = m.max(dim=0).values
        scale = torch.exp(m - m_all)
        s_all = (s * scale).sum(0)
        lse = m_all + torch.log(s_all)
        lp = z_target.sum(0) - lse
        entropy = lse - (t * scale).sum(0) / s_all
        ctx.save_for_backward(hidden, weight, targets, lse)
        ctx.temperature = float(temperature)
        ctx.backward_chunk_size = backward_chunk_size
        ctx.mark_non_differentiable(entropy)
        return lp, entropy

    @staticmethod
    def backward(ctx, grad_lp, grad_entropy):  # type: ignore[override]
        hidden, weight, targets, lse = ctx.saved_tensors
        need_hidden, need_weight = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if grad_lp is None or not (need_hidden or need_weight):
            return None, None, None, None, None
        if ctx.backward_chunk_size is not None:
            grad_hidden, grad_weight = _chunked_backward(
                hidden, weight, targets, lse, grad_lp.float().contiguous(), ctx.temperature, ctx.backward_chunk_size, need_hidden, need_weight
            )
            return grad_hidden, grad_weight, None, None, None
        n, h = hidden.shape
        v = weight.shape[0]
        # fp32 buffers: the atomics accumulate many tiles into each row.
        grad_hidden = torch.zeros((n, h), dtype=torch.float32, device=hidden.device) if need_hidden else lse
        grad_weight = torch.zeros((v, h), dtype=torch.float32, device=weight.device) if need_weight else lse
        if n > 0:
            block_n, block_v, block_h, num_warps = _block_sizes(n)
            extra = {} if INTERPRET else {"num_warps": num_warps}
            grid = (triton.cdiv(n, block_n), triton.cdiv(v, block_v))
            _linear_logprobs_backward_kernel[grid](
                hidden, weight, targets, lse, grad_lp.float().contiguous(), grad_hidden, grad_weight,
                n, v, h, hidden.stride(0), weight.stride(0), ctx.temperature,
                BLOCK_N=block_n, BLOCK_V=block_v, BLOCK_H=block_h, DOT_FP32=INTERPRET, PRECISION=_dot_precision(hidden.dtype),
                NEED_HIDDEN=need_hidden, NEED_WEIGHT=need_weight, **extra,
            )
        return (
            grad_hidden.to(hidden.dtype) if need_hidden else None,
            grad_weight.to(weight.dtype) if need_weight else None,
            None,
            None,
            None,
        )


def _chunked_backward(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, lse: torch.Tensor, grad_lp: torch.Tensor,
    temperature: float, chunk_size: int, need_hidden: bool, need_weight: bool,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Backward in token chunks: Triton writes the chunk's dlogits (recomputing logits tile by tile in fp32),
    cuBLAS does the two products. No atomics; the price is one (chunk_size, V) tensor in the input dtype."""
    n, h = hidden.shape
    v = weight.shape[0]
    block_n, block_v, block_h, num_warps = _block_sizes(min(n, chunk_size))
    extra = {} if INTERPRET else {"num_warps": num_warps}
    grad_hidden = torch.empty_like(hidden) if need_hidden else None
    single_chunk = n <= chunk_size
    # Several chunks add into the weight gradient: accumulate in fp32 (in place for fp32 inputs).
    grad_weight_acc = torch.zeros((v, h), dtype=torch.float32, device=weight.device) if (need_weight and not single_chunk) else None
    grad_weight = None
    for start in range(0, n, chunk_size):
        rows = slice(start, min(start + chunk_size, n))
        c = rows.stop - rows.start
        dlogits = torch.empty((c, v), dtype=hidden.dtype, device=hidden.device)
        _linear_dlogits_kernel[(triton.cdiv(c, block_n), triton.cdiv(v, block_v))](
            hidden[rows], weight, targets[rows], lse[rows], grad_lp[rows], dlogits, c, v, h, hidden.stride(0), weight.stride(0),
            temperature, BLOCK_N=block_n, BLOCK_V=block_v, BLOCK_H=block_h, DOT_FP32=INTERPRET,
            PRECISION=_dot_precision(hidden.dtype), **extra,
        )
        if need_hidden:
            torch.mm(dlogits, weight, out=grad_hidden[rows])
        if need_weight:
            if single_chunk:
                grad_weight = dlogits.T @ hidden[rows]
            elif hidden.dtype == torch.float32:
                grad_weight_acc.addmm_(dlogits.T, hidden[rows])
            else:
                grad_weight_acc.add_(dlogits.T @ hidden[rows])
        del dlogits
    if grad_weight_acc is not None:
        grad_weight = grad_weight_acc.to(weight.dtype)
    return grad_hidden, grad_weight


def linear_logprobs_triton(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    target_ids: torch.Tensor,
    temperature: float = 1.0,
    *,
    with_entropy: bool = True,
    backward_chunk_size: int | None = DEFAULT_BACKWARD_CHUNK_SIZE,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Same as :func:`linear_logprobs_ref`, with the Triton kernels.

    The forward never stores logits. ``backward_chunk_size``: tokens per backward chunk, whose
    (chunk, V) dlogits Triton writes in the input dtype and cuBLAS multiplies; None selects the fully
    fused backward (see the module docstring for the trade-off).
    """
    if TRITON_IMPORT_ERROR is not None:
        raise RuntimeError(f"Triton is unavailable: {TRITON_IMPORT_ERROR}")
    _check_inputs(hidden, weight, target_ids, temperature)
    if backward_chunk_size is not None and backward_chunk_size < 1:
        raise ValueError(f"Invalid backward_chunk_size ({backward_chunk_size}). Use a positive token count, or None for the fully fused backward.")
    lp, entropy = LinearLogProbsTritonFunction.apply(hidden, weight, target_ids, float(temperature), backward_chunk_size)
    return lp, (entropy if with_entropy else None)
