"""Synthetic example videos for the web demo, rendered when the app starts (nothing is shipped).

Each example is one video of the synthetic reasoning-VOS task (``videoseg_o3.data.synthetic``)
encoded as an MP4 with one of its queries and the ground-truth reasoning path for that query (the
VTS-CoT turns built from the exact masks). Replaying that path through a checkpoint shows the
coarse-to-fine turns (select an interval, look at its keyframe, answer) even with a random model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

# Short, small clips: a CPU propagates them in seconds; the task's difficulty does not depend on size.
EXAMPLE_FRAMES = (12, 16)
EXAMPLE_SIZE = (64, 96)
EXAMPLE_FPS = 8.0


@dataclass(frozen=True)
class Example:
    """One bundled example.

    Attributes:
        video_path: the MP4 file.
        video_id: the synthetic video's id (``test_00000``...).
        query: one of its expressions.
        scripted_turns: the ground-truth assistant turns for ``query`` (one protocol turn each).
    """

    video_path: Path
    video_id: str
    query: str
    scripted_turns: tuple[str, ...]

    @property
    def label(self) -> str:
        """What the page lists for this example."""
        return f"{self.video_id}: {self.query}"


def generate_examples(folder: str | Path, count: int, *, seed: int = 0) -> list[Example]:
    """Render ``count`` synthetic videos into ``folder`` and return one example per video.

    Args:
        folder: created; receives ``data/`` (the synthetic split: frames, masks, traces) and
            ``<video_id>.mp4`` per video.
        count: number of videos (0 returns []).
        seed: the synthetic split's seed.
    Returns:
        examples in video order; each uses the video's first expression that has a trace.
    """
    from videoseg_o3.data.synthetic import SynthConfig, generate_split
    from videoseg_o3.io import open_video, write_video

    if count < 0:
        raise ValueError(f"Invalid example count ({count}). Use an int >= 0.")
    if count == 0:
        return []
    folder = Path(folder)
    data = folder / "data"
    generate_split(data, count, seed=seed, split="test", cfg=SynthConfig(frames=EXAMPLE_FRAMES, size=EXAMPLE_SIZE))
    traces: dict[str, dict] = {}
    for record in json.loads((data / "vts_cot.json").read_text()):
        traces.setdefault(record["video_name"], record)
    examples = []
    for video_id in sorted(traces):
        record = traces[video_id]
        path = folder / f"{video_id}.mp4"
        with open_video(data / "JPEGImages" / video_id) as reader:
            frames = reader.get_frames(list(range(int(reader.num_frames))))
        # 4:2:0 video needs even sides: drop an odd last row/column (frame indices, which the
        # trace refers to, are unchanged).
        height, width = frames.shape[1] // 2 * 2, frames.shape[2] // 2 * 2
        write_video(path, frames[:, :height, :width].contiguous(), EXAMPLE_FPS)
        turns = tuple(c["value"] for c in record["conversations"] if c["from"] == "gpt")
        examples.append(Example(path, video_id, record["exp"], turns))
    return examples
