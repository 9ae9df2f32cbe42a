"""One router per area; each is thin: validate, call the store, shape the answer."""
