"""Manufacturers: the catalog file, the OAuth client side, device adapters. No storage."""
