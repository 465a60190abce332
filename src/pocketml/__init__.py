"""pocketml: the open, self-hostable platform for machine learning inside mobile apps.

The public API is small and re-exported here; everything else lives in one subpackage per
lifecycle stage (``pocketml.data``, ``pocketml.train``, ``pocketml.convert``, ...).
Importing pocketml is cheap: heavy frameworks load only inside the functions that need them.
"""

from pocketml._version import __version__
from pocketml.errors import PocketMLError

__all__ = ["PocketMLError", "__version__"]
