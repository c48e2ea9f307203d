"""``python -m videoseg_o3`` is the same as the ``videoseg-o3`` console script."""

from videoseg_o3.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
