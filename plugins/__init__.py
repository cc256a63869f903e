"""kvmfx's built-in plugins, loaded through the ``kvmfx`` entry-point group like any other."""
