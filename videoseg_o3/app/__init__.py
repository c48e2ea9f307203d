"""``videoseg-o3 app``: a local web page that segments a video and shows how the policy got there.

- :mod:`~videoseg_o3.app.config`: :class:`AppConfig` (host, port, limits, examples).
- :mod:`~videoseg_o3.app.inputs`: :func:`check_request` turns an upload, a query and optional
  scripted turns into an open reader, or a :class:`RequestError` whose lines the page shows.
- :mod:`~videoseg_o3.app.service`: :class:`SegmentService` runs one request at a time on the
  loaded model and yields the turns as they finish, propagation progress, then the outputs.
- :mod:`~videoseg_o3.app.cards`: the HTML of the turn cards (timeline, keyframe, thinking).
- :mod:`~videoseg_o3.app.examples`: synthetic example videos rendered at start.
- :mod:`~videoseg_o3.app.ui`: the Gradio page and :func:`~videoseg_o3.app.ui.serve` (imports gradio,
  an optional dependency: ``pip install 'videoseg_o3[app]'``).

Everything except ``ui`` works without Gradio.
"""

from videoseg_o3.app.config import AppConfig
from videoseg_o3.app.examples import Example, generate_examples
from videoseg_o3.app.inputs import Request, RequestError, check_request, parse_scripted_turns
from videoseg_o3.app.service import Finished, ProgressUpdate, SegmentService, TurnsUpdate

__all__ = [
    "AppConfig",
    "Example",
    "Finished",
    "ProgressUpdate",
    "Request",
    "RequestError",
    "SegmentService",
    "TurnsUpdate",
    "check_request",
    "generate_examples",
    "parse_scripted_turns",
]
