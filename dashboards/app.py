"""Streamlit entry script of the what-if dashboard: ``streamlit run dashboards/app.py``.

Everything lives in :mod:`dashboards.ui`; this file only runs it (Streamlit executes it as ``__main__``
on every interaction). The guard matters: the job processes of :mod:`dashboards.jobs` re-import the main
script under another name, and must not draw the app.
"""

from __future__ import annotations

from dashboards.ui import main

if __name__ == "__main__":
    main()
