"""OneVault Site Tracking: multi-tenant event tracking with a Data Vault 2.0 pipeline in PostgreSQL."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("onevault")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"
