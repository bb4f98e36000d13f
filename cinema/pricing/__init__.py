"""Prices of a booking: ticket types, fees, promo codes, and the totals computed from them."""
