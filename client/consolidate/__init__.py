"""Consolidation, the memory's sleep: a session becomes a summary plus the facts that make it
unique, each traced to the turns it came from."""
