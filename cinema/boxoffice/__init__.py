"""The box office: finding bookings, the tickets' check-in codes, checking tickets in."""
