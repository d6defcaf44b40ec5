"""How a run treats its sources and detections: the one place each run option is defined.

`edge-lwdetr run` derives its command-line options from these fields (edge_lwdetr/options.py) and hands their
values to the sources, the trackers and the pipeline. The model's options (which file, backend, device) are the backends'; the outputs' (--save, --save-json,
--show, --exist-ok) are the command's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edge_lwdetr.defaults import DEFAULT_CONF
from edge_lwdetr.option_types import at_least, in_unit_interval, positive
from edge_lwdetr.options import CliOptions, cli


@dataclass(frozen=True)
class RunOptions(CliOptions):
    conf: float = field(
        default=DEFAULT_CONF,
        metadata=cli(f"keep detections scoring above this, in [0, 1] ({DEFAULT_CONF})", type=in_unit_interval),
    )
    max_frames: int | None = field(
        default=None, metadata=cli("stop after this many processed frames (all sources together)", type=at_least(1))
    )
    vid_stride: int = field(
        default=1,
        metadata=cli("take every Nth frame of each source (live sources: at most every Nth) (1)", type=at_least(1)),
    )
    stream_timeout: float = field(
        default=5.0, metadata=cli("rtsp/http: open and read timeout in s (5)", type=positive)
    )
    track: bool = field(
        default=False,
        metadata=cli("follow objects across frames (ByteTrack): a track id per detection in the JSONL and on the video; "
                     "needs the track extra"),  # fmt: skip
    )
    tile: bool = field(
        default=False, metadata=cli("several sources: --save writes one video of them side by side")
    )
