"""The Gradio page of ``videoseg-o3 app`` and the server around it.

Layout: the inputs on the left (video upload, synthetic examples, query, an optional reasoning
path to replay, the Segment button), the results on the right (a message line, one card per turn
as the turns finish, then the overlay video and the downloads). The handler is a generator so the
page updates while the request runs; the queue runs one request at a time (one model in memory).

Privacy: the server listens on 127.0.0.1 unless told otherwise, Gradio's analytics (and its version
check) are off, the page loads nothing from other hosts (Gradio 6 serves its fonts itself; the
browser test checks every request), and uploads and outputs live in one temporary folder that
:func:`serve` removes when the app stops.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from videoseg_o3.app.cards import CSS, cards_html, message_html, summary_lines
from videoseg_o3.app.config import AppConfig
from videoseg_o3.app.examples import Example, generate_examples
from videoseg_o3.app.inputs import RequestError, check_request
from videoseg_o3.app.service import Finished, ProgressUpdate, SegmentService, TurnsUpdate

INTRO = """\
## videoseg-o3: reasoning video object segmentation
Upload a clip (or pick a synthetic example), ask for an object, press **Segment**. The policy looks at
the whole video at low resolution, chooses an interval and a keyframe to look at closely, and ends with
a `[SEG]` token that prompts SAM2, which tracks the object through the video. Each turn is shown below
as it finishes: its action, the interval on the video's timeline, the keyframe, and its thinking.
"""


def import_gradio() -> Any:
    """``gradio``, or a clear error saying how to install it (it is an optional dependency)."""
    try:
        import gradio
    except ImportError as exc:
        raise RuntimeError(
            f"The web demo needs gradio, which is not installed ({exc}). "
            "Install it with `pip install 'videoseg_o3[app]'` or `bash scripts/install.sh`."
        ) from exc
    return gradio


def make_handler(service: SegmentService) -> Callable[..., Any]:
    """The Segment button's generator: ``(video, query, scripted) -> (message, cards, overlay, files)``."""
    gr = import_gradio()

    def segment(video: str | None, query: str | None, scripted: str | None, progress: Any = gr.Progress()):
        try:
            request = check_request(video, query, scripted, service.config)
        except RequestError as exc:
            yield message_html("error", exc.problems), "", None, None
            return
        num_frames = int(request.reader.num_frames)
        replay = " (replaying the given turns)" if request.scripted_turns else ""
        turns: TurnsUpdate = TurnsUpdate([], num_frames, {})

        def cards(pending: str | None = None) -> str:
            return cards_html(turns.turns, num_frames, turns.thumbnails, pending=pending)

        updates = service.run(request)  # from its first step on, the service closes the reader
        try:
            yield message_html("info", [f"Segmenting {num_frames} frames{replay}."]), cards("Reasoning: turn 1…"), None, None
        except GeneratorExit:  # the visitor left before the work started
            request.reader.close()
            raise
        try:
            propagating = False
            for update in updates:
                if isinstance(update, TurnsUpdate):
                    turns = update
                    done = len(update.turns)
                    yield (message_html("info", [f"{done} turn(s) finished."]),
                           cards(f"Waiting for turn {done + 1} or the end of the episode…"), None, None)
                elif isinstance(update, ProgressUpdate):
                    if not propagating:  # the episode is over: its cards are complete
                        propagating = True
                        yield message_html("info", ["Propagating the mask through the video with SAM2."]), cards(), None, None
                    progress((update.done, update.total), desc="Propagating the mask", unit="frames")
                elif isinstance(update, Finished):
                    files = [str(update.masks_zip), str(update.turns_json)]
                    kind = "error" if update.record["error"] else "ok"
                    yield message_html(kind, summary_lines(update.record)), cards(), str(update.overlay), files
        except Exception as exc:  # the model failed: a message on the page, the trace in the server log
            yield message_html("error", [f"Segmentation failed: {exc}. The server log has the details."]), cards(), None, None

    return segment


def build_blocks(service: SegmentService, examples: Sequence[Example], *, title: str = "videoseg-o3") -> Any:
    """The page (a ``gr.Blocks``), wired to ``service``; not launched."""
    gr = import_gradio()
    config = service.config
    with gr.Blocks(title=title, analytics_enabled=False) as demo:
        gr.Markdown(INTRO + f"\nCheckpoint: `{service.checkpoint or '(in memory)'}`.")
        with gr.Row():
            with gr.Column(scale=2):
                video = gr.Video(label="Video", sources=["upload"], height=320, elem_id="video-input")
                query = gr.Textbox(label="Query", placeholder="the shape that appears after the blue square leaves", lines=2, elem_id="query")
                with gr.Accordion("Replay a reasoning path (teacher forcing)", open=False):
                    scripted = gr.Textbox(
                        label="Assistant turns, one per line (empty: the model chooses)", lines=4, elem_id="scripted",
                        placeholder='<think>Step 1: … Action: …</think><select><VTG>{"start": 0, "end": 9, "keyframe": 4}</VTG><RefSeg>[SEG]</RefSeg></select>',
                    )
                button = gr.Button("Segment", variant="primary", elem_id="segment")
                gr.Markdown(
                    f"Limits: {config.max_frames} frames, {config.max_megabytes:g} MB. "
                    "Files stay on this machine and are deleted when the app stops."
                )
                if examples:
                    gr.Examples(
                        examples=[[str(e.video_path), e.query, "\n".join(e.scripted_turns)] for e in examples],
                        inputs=[video, query, scripted],
                        example_labels=[e.label for e in examples],
                        label="Synthetic examples (with their ground-truth reasoning path to replay)",
                    )
            with gr.Column(scale=3):
                status = gr.HTML(elem_id="status")
                cards = gr.HTML(elem_id="turn-cards")
                overlay = gr.Video(label="Overlay", interactive=False, height=360, elem_id="overlay")
                files = gr.File(label="Downloads: masks (zip of PNGs) and turns.json", file_count="multiple", interactive=False, elem_id="downloads")
        button.click(
            make_handler(service), [video, query, scripted], [status, cards, overlay, files],
            concurrency_limit=1, show_progress_on=[overlay],
        )
    return demo


class _Stop(Exception):
    """Raised in the main thread by SIGTERM so the app stops like on Ctrl-C."""


def serve(pipeline: Any, config: AppConfig, *, checkpoint: str = "", on_ready: Callable[[str, Path], None] | None = None) -> None:
    """Serve the page until Ctrl-C or SIGTERM, then remove every upload and output.

    Args:
        pipeline: the loaded :class:`videoseg_o3.pipeline.VideoSegO3` (loaded once, here reused).
        config: host, port, limits, examples.
        checkpoint: the checkpoint's name for the page and ``turns.json``.
        on_ready: called with the page's URL and the temporary folder once the server answers.
    """
    gr = import_gradio()
    workdir = Path(tempfile.mkdtemp(prefix="videoseg-o3-app-"))
    # Gradio keeps uploads and the files it serves in GRADIO_TEMP_DIR: put them in our folder so
    # that removing it at stop removes everything a visitor sent or received.
    os.environ["GRADIO_TEMP_DIR"] = str(workdir / "gradio")
    demo = None
    previous = signal.signal(signal.SIGTERM, _raise_stop) if _in_main_thread() else None
    try:
        examples = generate_examples(workdir / "examples", config.examples, seed=config.examples_seed)
        service = SegmentService(pipeline, config, workdir, checkpoint=checkpoint)
        demo = build_blocks(service, examples)
        demo.queue(default_concurrency_limit=1, max_size=32)
        demo.launch(
            server_name=config.host, server_port=config.port, share=False, inbrowser=False, prevent_thread_lock=True,
            quiet=True, show_error=False, allowed_paths=[str(workdir)], max_file_size=config.max_bytes,
            ssr_mode=False, enable_monitoring=False, mcp_server=False, css=CSS,
        )
        url = f"http://{config.host}:{demo.server_port}/"
        if on_ready is not None:
            on_ready(url, workdir)
        while demo.is_running:
            time.sleep(0.2)
    except (KeyboardInterrupt, _Stop):
        pass
    finally:
        if demo is not None:
            demo.close(verbose=False)
        shutil.rmtree(workdir, ignore_errors=True)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _raise_stop(signum: int, frame: Any) -> None:
    raise _Stop()


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


__all__ = ["build_blocks", "import_gradio", "make_handler", "serve"]
