"""The payment provider adapter: only this package speaks Stripe."""
