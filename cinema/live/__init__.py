"""Live seat status: per-screening fan-out of seat changes to Server-Sent-Events viewers."""
