"""client/scenes."""
