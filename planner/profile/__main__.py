"""``python -m planner.profile``: run the profiler on a GPU host without the planner's CLI dependencies."""

from __future__ import annotations

import sys

from planner.profile.runner import main_args

if __name__ == "__main__":
    sys.exit(main_args())
