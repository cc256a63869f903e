"""Kernel profiles that ship with kvmfx (package data).

A profile (``kvmfx profile build DUMP`` writes one into the user's cache) placed in this
folder is installed with kvmfx and found by the profile provider after the user's cache,
by the same key (the kernel's release and build id): a fleet's kernels can be made known
to every installation without a first cold open.
"""
