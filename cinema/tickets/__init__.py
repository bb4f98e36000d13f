"""Ticket emails: what a CONFIRMED booking's customer receives, sent at most once."""
