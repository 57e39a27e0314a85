"""The replay simulator's edge: trace CSVs in, JSON, tables and PNG plots out (the replay
itself is pure and lives in ``autoscaler.replay``)."""
