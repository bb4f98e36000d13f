"""The HTTP layer: handlers, request and response models, middleware. Knows no SQL or Lua."""
