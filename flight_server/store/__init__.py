"""flight_server/store."""
