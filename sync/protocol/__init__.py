"""sync/protocol."""
