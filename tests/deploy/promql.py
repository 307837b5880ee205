"""Small PromQL helpers for tests/deploy: which series an expression names, and a syntax check by promtool.

The name extraction is a tokenizer, not a parser: it drops string literals, label matchers ``{...}``, ranges
``[...]`` and the label lists of ``by``/``without``/``on``/``ignoring``/``group_left``/``group_right``, then
keeps every identifier that is not a function call, a keyword or part of a number or duration. promtool
parses the same expressions for real (:func:`promtool_check_exprs`), so anything the tokenizer would
misread is also a syntax error there.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import yaml

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_LABEL_LIST = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"(?<![\w.:])([A-Za-z_:][A-Za-z0-9_:]*)(?![\w:])(?!\s*\()")
_KEYWORDS = frozenset({
    "and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right",
    "inf", "nan", "atan2",
})

# Grafana's built-in interval variables and a stand-in for every dashboard variable, so that the
# expressions Grafana would send are checked, not the templates.
_GRAFANA_BUILTINS = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}
_GRAFANA_VAR = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")


def expand_grafana(expr: str) -> str:
    """Replace Grafana variables by values Grafana could send (intervals by durations, others by ``x``).

    >>> expand_grafana('rate(m{pool=~"$pool"}[$__rate_interval])')
    'rate(m{pool=~"x"}[5m])'
    """
    for name, value in _GRAFANA_BUILTINS.items():
        expr = expr.replace(name, value)
    return _GRAFANA_VAR.sub("x", expr)


def metric_names(expr: str) -> frozenset[str]:
    """Series names an expression selects (``__name__`` matchers are not understood: see tests).

    >>> sorted(metric_names('sum by (pool) (rate(a_total{x="b c"}[5m])) / on (pool) b:rec offset 1h'))
    ['a_total', 'b:rec']
    >>> sorted(metric_names('histogram_quantile(0.99, sum by (le) (rate(h_bucket[5m]))) > 1e3'))
    ['h_bucket']
    """
    text = _STRING.sub('""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = _LABEL_LIST.sub(" ", text)  # "sum by (x) (" must read as a call of sum
    return frozenset(m for m in _IDENT.findall(text) if m.lower() not in _KEYWORDS)


def promtool() -> Path | None:
    """The promtool binary (Debian's package installs /usr/bin/promtool), or None."""
    found = shutil.which("promtool")
    return Path(found) if found else None


def promtool_check_exprs(exprs: dict[str, str], tmp: Path) -> subprocess.CompletedProcess[str]:
    """Parse expressions with promtool by writing them as recording rules into a throwaway rules file.

    Args:
        exprs: a name for each expression (used as the record name, so errors point at it) -> PromQL.
        tmp: a scratch directory.

    Returns:
        promtool's result; ``returncode`` 0 means every expression parsed.
    """
    tool = promtool()
    if tool is None:
        raise FileNotFoundError("promtool")
    rules = [{"record": "check:" + re.sub(r"[^A-Za-z0-9_]", "_", name), "expr": e}
             for name, e in exprs.items()]
    path = tmp / "exprs.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "exprs", "rules": rules}]}), encoding="utf-8")
    return subprocess.run([str(tool), "check", "rules", str(path)], capture_output=True, text=True,
                          check=False, timeout=60)
