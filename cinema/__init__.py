"""CinemaCore: a cinema ticket booking API that sells every seat at most once."""
