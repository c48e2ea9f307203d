"""Prompt texts of the two prompt styles.

``videoseg-o3``: the exact texts the released VideoSEG-O3 checkpoints were trained and evaluated
with. They are a compatibility contract, like an API constant: a checkpoint sees the wording it
learned, character for character. Sources (public code of Dmmm1997/VideoSEG-O3, commit 451db34):

- system prompt: ``projects/open_r1/constants.py::SEG_COT_SYS`` (the same string is
  ``SYS_PROMPT`` in ``projects/sa2va/hf/models_qwen3vl/modeling_sa2va_qwen_cotv3_keyframe_withvis.py``
  and in ``projects/open_r1/trainer/sa2va/modeling_sa2va_cot.py``). It shows ``<select>{...}</select>``
  without ``<VTG>`` and an empty ``<RefSeg></RefSeg>``; the checkpoints write ``<VTG>`` and ``[SEG]``
  anyway, and the parser accepts both.
- evaluation question: ``projects/sa2va/evaluation/dataset/refVOS_COT_v2.py::SEG_PROMPT_QUESTION``;
  RL question: ``constants.py::SEG_COT_TEMPORAL_TEMPLATE`` (the same sentence wrapped in newlines).
- frame-list lines, keyframe line and follow-up instruction: ``predict_forward`` in the evaluation
  model file above (evaluation) and ``generation_forward_cot`` in the RL model file (rollouts).

Index lists are written as Python lists of ints (``[0, 5, 10]``), which is what the released code
prints for them in training (``.tolist()``) and, with the NumPy 1.x it ran on, at evaluation.

``default``: this project's own wording of the same protocol (same tags, same JSON keys), with a
label in front of every image so that each frame's index sits next to it.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_SYSTEM_PROMPT",
    "VIDEOSEG_O3_FOLLOWUP_INSTRUCTION",
    "VIDEOSEG_O3_FOLLOWUP_KEYFRAME",
    "VIDEOSEG_O3_FOLLOWUP_TEMPORAL",
    "VIDEOSEG_O3_QUESTION_EVAL",
    "VIDEOSEG_O3_QUESTION_RL",
    "VIDEOSEG_O3_SYSTEM_PROMPT",
    "VIDEOSEG_O3_TURN0_SPATIAL",
    "VIDEOSEG_O3_TURN0_TEMPORAL",
]

# ---------------------------------------------------------------- released texts (do not reword)

VIDEOSEG_O3_SYSTEM_PROMPT = (
    "You are a helpful assistant. Your ultimate goal is to perform video temporal grounding (VTG) and "
    "referring video object segmentation (RefVOS). "
    "Based on the text query and video content, output your thinking process within <think> and </think> tags. "
    "If anything is unclear, you can select frames from the video for a clearer view by outputting "
    '<select>{"start": start, "end": end, "keyframe": keyframe}</select>, where \'start\' and \'end\' are the '
    "start and end frame indices of the region for detailed analysis, and 'keyframe' is the corresponding "
    "keyframe index. "
    'Once the final answer is confirmed, provide it within <answer><VTG>{"start": start, "end": end, '
    '"keyframe": keyframe}</VTG>, <RefSeg></RefSeg></answer>.'
)

# {query}: the user's expression; {num_frames}: frames in the whole video.
VIDEOSEG_O3_QUESTION_EVAL = (
    'The query is "{query}". Show me your thought process for finding and segmenting this target. '
    "This video has {num_frames} frames."
)
VIDEOSEG_O3_QUESTION_RL = "\n" + VIDEOSEG_O3_QUESTION_EVAL + "\n"

# Turn 0: these lines follow the images they describe. {count}: number of frames; {indices}: their list.
VIDEOSEG_O3_TURN0_TEMPORAL = "\nHere are {count} low-resolution frames in this video (frame indice is {indices})\n"
VIDEOSEG_O3_TURN0_SPATIAL = "Here are {count} high-resolution frames in this video (frame indice:{indices}).\n"

# Follow-up turn after a <select>.
VIDEOSEG_O3_FOLLOWUP_TEMPORAL = "\nHere are {count} low-resolution frames in this video (frame indices are {indices})\n"
VIDEOSEG_O3_FOLLOWUP_KEYFRAME = "Here is key frames (frame indice:{keyframe}).\n"
# {query}: at evaluation the whole turn-0 question text, in RL the bare expression (that is what
# each released code path passes here).
VIDEOSEG_O3_FOLLOWUP_INSTRUCTION = (
    "The text query is '{query}'.\n "
    "Continue your reasoning process inside <think> and </think>. "
    "If needed, you can continue to select images on the original video, by outputting <select> and </select> as before. "
    "If the final answer is confirmed, put your final answer inside <answer> and </answer>."
)

# ---------------------------------------------------------------- this project's wording

DEFAULT_SYSTEM_PROMPT = (
    "You find and segment one object in a video, described by a text query. You work coarse to fine over "
    "a few turns. Frames are numbered from 0, and every image you see is preceded by its frame number.\n"
    "In every turn, first reason inside <think> and </think> in four labelled parts: "
    "\"Step 1:\" temporal dynamics (when the object appears and what it does), "
    "\"Step 2:\" spatial details (where it is and what it looks like), "
    "\"Step 3:\" expression analysis (which words of the query single it out), "
    "\"Action:\" what you do next.\n"
    "Then write exactly one action:\n"
    '- to look closer at frames start..end and see frame keyframe at high resolution: '
    '<select><VTG>{"start": start, "end": end, "keyframe": keyframe}</VTG><RefSeg>[SEG]</RefSeg></select>\n'
    '- when you are sure: <answer><VTG>{"start": start, "end": end, "keyframe": keyframe}</VTG>'
    "<RefSeg>[SEG]</RefSeg></answer>, where start..end is when the object is visible and keyframe is the "
    "frame where it is seen best.\n"
    "All three numbers are frame numbers of the whole video."
)
DEFAULT_TURN0_TEMPORAL_HEADER = "Overview: {count} low-resolution frames spread over the video.\n"
DEFAULT_TURN0_SPATIAL_HEADER = "Detail: {count} high-resolution frames.\n"
DEFAULT_FRAME_LABEL = "Frame {index}: "
DEFAULT_QUESTION = (
    'Query: "{query}"\n'
    "The video has {num_frames} frames, numbered 0 to {last_frame}. "
    "Reason in <think> (Step 1, Step 2, Step 3, Action), then <select> to look closer or <answer> to finish."
)
DEFAULT_FOLLOWUP_TEMPORAL_HEADER = "Frames {start} to {end} you selected: {count} at low resolution.\n"
DEFAULT_FOLLOWUP_KEYFRAME_HEADER = "Keyframe {keyframe} at high resolution.\n"
DEFAULT_FOLLOWUP_INSTRUCTION = (
    'Query: "{query}"\n'
    "Continue reasoning inside <think> and </think> (Step 1, Step 2, Step 3, Action). "
    'Then either <select><VTG>{{"start": start, "end": end, "keyframe": keyframe}}</VTG><RefSeg>[SEG]</RefSeg></select> '
    'to look again, or <answer><VTG>{{"start": start, "end": end, "keyframe": keyframe}}</VTG><RefSeg>[SEG]</RefSeg></answer> '
    "to finish."
)
