"""Linux: process models for the live system (/proc) and for dumps."""
