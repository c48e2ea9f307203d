"""Token choice: greedy, temperature, top-p, seeding."""

from __future__ import annotations

import torch

from videoseg_o3.agent import GenerationConfig, TokenChooser


def test_greedy_is_argmax() -> None:
    logits = torch.tensor([0.1, 3.0, -1.0, 2.9])
    assert TokenChooser(GenerationConfig(), torch.device("cpu"))(logits) == 1


def test_tiny_top_p_keeps_only_the_best_token() -> None:
    logits = torch.tensor([0.1, 3.0, -1.0, 2.9])
    chooser = TokenChooser(GenerationConfig(do_sample=True, top_p=1e-6, seed=0), torch.device("cpu"))
    assert {chooser(logits) for _ in range(50)} == {1}


def test_sampling_follows_the_distribution_and_is_seeded() -> None:
    logits = torch.log(torch.tensor([0.7, 0.2, 0.1]))
    draw = lambda seed: [TokenChooser(GenerationConfig(do_sample=True, seed=seed), torch.device("cpu"))(logits)  # noqa: E731
                         for _ in range(1)]
    chooser = TokenChooser(GenerationConfig(do_sample=True, seed=5), torch.device("cpu"))
    counts = torch.bincount(torch.tensor([chooser(logits) for _ in range(2000)]), minlength=3).float() / 2000
    torch.testing.assert_close(counts, torch.tensor([0.7, 0.2, 0.1]), atol=0.04, rtol=0)
    assert draw(3) == draw(3)
    # a high temperature flattens the distribution
    hot = TokenChooser(GenerationConfig(do_sample=True, temperature=50.0, seed=1), torch.device("cpu"))
    hot_counts = torch.bincount(torch.tensor([hot(logits) for _ in range(2000)]), minlength=3).float() / 2000
    assert hot_counts.min() > 0.25


def test_top_k_keeps_only_the_k_best_tokens() -> None:
    """Guards the top-k warper (RL rollouts sample with top_k=50): tokens outside the k best never come out."""
    logits = torch.tensor([0.1, 3.0, -1.0, 2.9, 2.8])
    chooser = TokenChooser(GenerationConfig(do_sample=True, top_k=2, seed=0), torch.device("cpu"))
    assert {chooser(logits) for _ in range(300)} == {1, 3}
    wide = TokenChooser(GenerationConfig(do_sample=True, top_k=0, seed=0), torch.device("cpu"))
    assert len({wide(logits) for _ in range(300)}) > 2
    import pytest

    with pytest.raises(ValueError, match="Invalid top_k"):
        GenerationConfig(top_k=-1)
