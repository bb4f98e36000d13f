"""Accounts: password hashing, JWT access tokens, registration and login."""
