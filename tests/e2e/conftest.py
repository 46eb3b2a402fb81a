from e2e_support import serve

__all__ = ["serve"]
