"""Dump formats: each module decodes one physical-memory container."""
