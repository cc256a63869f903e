"""Architectures: page-table formats and kernel address-space layout."""
