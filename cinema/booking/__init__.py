"""The booking service and its rules. Knows neither HTTP nor how Redis or PostgreSQL are spoken."""
