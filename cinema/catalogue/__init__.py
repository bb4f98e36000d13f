"""Movies, halls with seat maps, and screenings: plain types and rules, no HTTP or SQL."""
