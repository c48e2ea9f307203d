"""The episode state machine: observation -> generate -> parse -> fetch frames -> next turn.

``run_episode(policy, video, query, protocol=..., generation=..., mode="kv")`` returns a
:class:`Trajectory`; ``run_episodes`` runs several prompts and G rollouts per prompt (shared prefix).
``decoding="batched"`` (default) decodes the generating rollouts in one forward pass per token.
``mode="kv"`` extends the KV cache turn after turn; ``mode="reencode"`` re-runs the whole dialogue
each turn (the reference behaviour, kept for comparison).
"""

from videoseg_o3.agent.context import MODES, BatchedDecoder, Chunk, ContextStats, DialogueContext, StepOutput
from videoseg_o3.agent.episode import DECODINGS, STAGES, Trajectory, TurnRecord, run_episode, run_episodes
from videoseg_o3.agent.generation import GenerationConfig, TokenChooser

__all__ = [
    "DECODINGS",
    "MODES",
    "BatchedDecoder",
    "STAGES",
    "Chunk",
    "ContextStats",
    "DialogueContext",
    "GenerationConfig",
    "StepOutput",
    "TokenChooser",
    "Trajectory",
    "TurnRecord",
    "run_episode",
    "run_episodes",
]
