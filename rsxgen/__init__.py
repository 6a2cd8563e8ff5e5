"""rsxgen: the static compiler of rsx task services."""

__version__ = "0.1.0"
