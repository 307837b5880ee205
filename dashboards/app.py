"""Streamlit entry script of the what-if dashboard: ``streamlit run dashboards/app.py``.

Everything lives in :mod:`dashboards.ui`; this file only runs it (Streamlit executes it as ``__main__``
on every interaction).
"""

from __future__ import annotations

from dashboards.ui import main

main()
