"""Structure-layout profiles shipped with kvmfx (package data)."""
