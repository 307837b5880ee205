"""The DP-attention option of the verbs that build one replica (replay, perf), one definition for both."""

from __future__ import annotations

from typing import Annotated

import typer

DPAttentionOpt = Annotated[bool, typer.Option(
    "--dp-attention",
    help="run attention data-parallel on the replica's tp GPUs, experts shared by EP (MoE with ep == tp: "
         "DeepSeek-V3's usual layout; each GPU holds its own sequences' KV, no all-reduce)")]
"""Use as ``dp_attention: DPAttentionOpt = False``."""
