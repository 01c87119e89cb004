"""dblayer: a database layer for Python services, over SQLAlchemy 2.x."""

from .core.database import Database

__all__ = ["Database", "__version__"]
__version__ = "0.1.0"
