"""The small LW-DETR trained on synthetic shapes that ships with the package: the default model of the CLI.

It detects the five shape classes of `edge_lwdetr.synthetic` (how it was trained, and its accuracy, are in
`assets/shapes_lwdetr/README.md`), so every command works offline on the repository's demo video.
"""

from pathlib import Path

BUNDLED_MODEL = Path(__file__).resolve().parent / "assets" / "shapes_lwdetr"
