"""Training (run from the checkout): ``python -m training.sft`` (VTS-CoT cold start) and ``python -m training.grpo``
(multi-turn GRPO with SEG-aware calibration).

- ``config``: ``SFTConfig`` / ``GRPOConfig`` (HfArgumentParser flags and YAML presets in ``configs/``).
- ``data``: VTS-CoT and RL records of benchmark folders -> encoded SFT examples / RL prompts.
- ``rollout`` / ``rollout_batch`` / ``advantages``: one rollout step as a plain function.
- ``losses`` / ``calibration``: the SFT mask loss and the GRPO loss.
- ``checkpointing`` / ``logging`` / ``distributed`` / ``plot``: resumable checkpoints, JSONL + TensorBoard logs,
  torchrun, reward and loss curves.
"""
