"""Symbol providers: kernel symbol tables from files and from the image."""
