"""flight_server/search."""
