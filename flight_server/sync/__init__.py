"""flight_server/sync."""
