"""Consolidation, the memory's sleep: a session becomes a summary plus the facts that make it
unique, each traced to the turns it came from.

``MemoryClient.consolidate`` and ``aimem consolidate`` run it; ``Consolidator`` is the
engine, over anything with a client's reads and writes (``MemoryApi``) and a chat model
(``Chat``: see ``aios_memory.client.llm``).
"""

from .check import REASONS, FactCheck, check_fact
from .dates import ResolvedDate, annotate, find_relative, resolve_in
from .engine import Chat, Consolidator, MemoryApi
from .policy import DEMOTIONS, ConsolidationPolicy, Demotion, parse_duration
from .reconstruct import Reconstruction, reconstruct
from .report import ConsolidationReport, SessionOutcome
from .sessions import group_sessions

__all__ = [
    "Chat",
    "ConsolidationPolicy",
    "DEMOTIONS",
    "ConsolidationReport",
    "Consolidator",
    "Demotion",
    "FactCheck",
    "MemoryApi",
    "REASONS",
    "Reconstruction",
    "ResolvedDate",
    "SessionOutcome",
    "annotate",
    "check_fact",
    "find_relative",
    "group_sessions",
    "parse_duration",
    "reconstruct",
    "resolve_in",
]
