"""Settings of the ``videoseg-o3 app`` web demo (one dataclass; CLI flags equal its field names)."""

from __future__ import annotations

from dataclasses import dataclass

LOOPBACK = "127.0.0.1"


@dataclass
class AppConfig:
    """What the web demo accepts and where it listens.

    Attributes:
        host: interface to listen on. The loopback default keeps the page (and the uploads) on this
            machine; ``0.0.0.0`` serves the local network, deliberately.
        port: TCP port (1-65535).
        max_frames: longest video accepted, in frames. Propagation costs one SAM2 step per frame, so
            this bounds the time one request holds the (single) model.
        max_megabytes: largest upload accepted, in MB (10^6 bytes); also the server's upload cap.
        examples: synthetic example videos generated at start (0: none).
        examples_seed: seed of those examples (the same seed gives the same videos and queries).
        thumbnail_side: longest side of a keyframe thumbnail on a turn card, in pixels (smaller
            frames are shown at their own size).
    """

    host: str = LOOPBACK
    port: int = 7860
    max_frames: int = 1800
    max_megabytes: float = 200.0
    examples: int = 3
    examples_seed: int = 0
    thumbnail_side: int = 320

    def __post_init__(self) -> None:
        if not isinstance(self.host, str) or not self.host.strip():
            raise ValueError(f"Invalid host ({self.host!r}). Use an interface address such as 127.0.0.1 or 0.0.0.0.")
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 1 <= self.port <= 65535:
            raise ValueError(f"Invalid port ({self.port!r}). Use an int in 1..65535.")
        if isinstance(self.max_frames, bool) or not isinstance(self.max_frames, int) or self.max_frames < 1:
            raise ValueError(f"Invalid max_frames ({self.max_frames!r}). Use an int >= 1.")
        if not isinstance(self.max_megabytes, (int, float)) or isinstance(self.max_megabytes, bool) or not self.max_megabytes > 0:
            raise ValueError(f"Invalid max_megabytes ({self.max_megabytes!r}). Use a number > 0.")
        if isinstance(self.examples, bool) or not isinstance(self.examples, int) or self.examples < 0:
            raise ValueError(f"Invalid examples ({self.examples!r}). Use an int >= 0.")
        if isinstance(self.thumbnail_side, bool) or not isinstance(self.thumbnail_side, int) or self.thumbnail_side < 16:
            raise ValueError(f"Invalid thumbnail_side ({self.thumbnail_side!r}). Use an int >= 16.")

    @property
    def max_bytes(self) -> int:
        """``max_megabytes`` in bytes."""
        return int(self.max_megabytes * 1_000_000)
