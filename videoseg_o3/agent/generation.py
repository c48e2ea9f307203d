"""Token choice for the episode loop: greedy or sampled (temperature, top-p), seeded."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class GenerationConfig:
    """How each assistant turn is generated."""

    max_new_tokens: int = field(default=1024, metadata={"help": "Most tokens generated per assistant turn (eval 1024, RL 512)."})
    do_sample: bool = field(default=False, metadata={"help": "Sample instead of greedy argmax (RL rollouts sample)."})
    temperature: float = field(default=1.0, metadata={"help": "Softmax temperature when sampling (> 0)."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling mass in (0, 1]; 1 keeps the whole distribution."})
    top_k: int = field(default=0, metadata={"help": "Sample among the k most likely tokens only; 0 keeps them all (RL: 50, "
                                                    "transformers' default)."})
    seed: int | None = field(default=None, metadata={"help": "Seed of the sampling generator; None draws from torch's global RNG."})

    def __post_init__(self) -> None:
        if isinstance(self.max_new_tokens, bool) or not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise ValueError(f"Invalid max_new_tokens ({self.max_new_tokens!r}). Set it to an int >= 1.")
        if not self.temperature > 0:
            raise ValueError(f"Invalid temperature ({self.temperature}). Set it > 0 (use do_sample=False for greedy).")
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 0:
            raise ValueError(f"Invalid top_k ({self.top_k!r}). Set it to an int >= 0 (0 disables it).")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"Invalid top_p ({self.top_p}). Set it in (0, 1].")


class TokenChooser:
    """Picks the next token from ``(V,)`` logits according to a :class:`GenerationConfig`.

    The temperature and top-p warpers are transformers' own (the same maths as ``generate()``);
    the loop around them is ours because a turn continues a KV cache that ``generate()`` cannot
    extend with new images mid-dialogue.
    """

    def __init__(self, config: GenerationConfig, device: torch.device, seed_offset: int = 0) -> None:
        from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

        self.config = config
        self.generator: torch.Generator | None = None
        if config.do_sample and config.seed is not None:
            self.generator = torch.Generator(device=device)
            self.generator.manual_seed(int(config.seed) + int(seed_offset))
        warpers = []
        if config.do_sample and config.temperature != 1.0:
            warpers.append(TemperatureLogitsWarper(config.temperature))
        if config.do_sample and config.top_k > 0:  # transformers' order: temperature, top-k, top-p
            warpers.append(TopKLogitsWarper(config.top_k))
        if config.do_sample and config.top_p < 1.0:
            warpers.append(TopPLogitsWarper(config.top_p))
        self.warpers = LogitsProcessorList(warpers)

    def __call__(self, logits: torch.Tensor) -> int:
        """``logits`` ``(V,)`` float -> the chosen token id."""
        if not self.config.do_sample:
            return int(torch.argmax(logits))
        scores = self.warpers(None, logits.float()[None])
        probs = torch.softmax(scores, dim=-1)
        return int(torch.multinomial(probs, 1, generator=self.generator)[0, 0])
