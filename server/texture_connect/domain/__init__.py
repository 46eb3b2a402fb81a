"""The pure core: the seed's rules as plain functions and small types. No I/O here."""
