"""Refunds: giving tickets back, customer self-cancel, cancelling a whole screening."""
