"""Texture Connect: customers authorize access to their energy devices; apps get a key."""
