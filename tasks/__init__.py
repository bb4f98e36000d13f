"""Taskiq broker and tasks (see the expiry issue)."""
